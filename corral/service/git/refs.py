"""Checks of what the model names: branches, revisions, remotes, authors, paths, URLs."""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

from corral.errors import InvalidRequest
from corral.service.git.constants import DEFAULT_TOKEN_USER
from corral.service.git.secrets import Auth, redact

_BRANCH_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/+-]{0,199}$")
_REV_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._/~^@{}:+-]{0,199}$")
_REMOTE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_AUTHOR_RE = re.compile(r"^([^<>\n]+?)\s*<([^<>\s]+)>$")


def check_branch(name: str, what: str = "branch") -> str:
    bad = (
        not _BRANCH_RE.match(name) or ".." in name or "//" in name or name.endswith(("/", ".", ".lock")) or "/." in name
    )
    if bad:
        raise InvalidRequest(
            f"invalid {what} name {name[:100]!r}: use letters, digits and '._/+-', starting with a letter "
            "or digit, without '..', '//', or a trailing '/', '.' or '.lock' (e.g. 'main', 'feature/x')"
        )
    return name


def check_rev(rev: str) -> str:
    if not _REV_RE.match(rev):
        raise InvalidRequest(
            f"invalid revision {rev[:100]!r}: give a branch, tag or commit id such as 'main', 'HEAD~2', "
            "'v1.0' or 'a1b2c3d' (no spaces, not starting with '-')"
        )
    return rev


def check_remote(remote: str) -> str:
    if not _REMOTE_RE.match(remote):
        raise InvalidRequest(f"invalid remote name {remote[:100]!r}: e.g. 'origin' (letters, digits, '._-')")
    return remote


def check_author(author: str) -> tuple[str, str]:
    match = _AUTHOR_RE.match(author.strip())
    if not match or "@" not in match.group(2):
        raise InvalidRequest(f"invalid author {author[:100]!r}: use 'Name <email@example.com>'")
    return match.group(1).strip(), match.group(2)


def check_depth(depth: int | None) -> int | None:
    if depth is not None and not 1 <= depth <= 1_000_000:
        raise InvalidRequest(f"depth must be between 1 and 1000000 commits (got {depth})")
    return depth


def check_repo_paths(paths: Sequence[str] | None) -> list[str]:
    paths = list(paths or [])
    if len(paths) > 1000:
        raise InvalidRequest(f"too many paths ({len(paths)}); at most 1000")
    for p in paths:
        if not p or "\x00" in p or len(p) > 4096:
            raise InvalidRequest(f"invalid path {p[:80]!r}: non-empty, no NUL, at most 4096 characters")
    return paths


def _bad_char(c: str) -> bool:
    return c.isspace() or ord(c) < 32 or ord(c) == 127


def _split(url: str) -> tuple[SplitResult, str, int | None] | None:
    """urlsplit with its host and port, or None when the URL cannot be parsed (urlsplit and .port
    raise ValueError on e.g. 'http://[::1' or a port over 65535)."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    return (parts, host, port) if host else None


def parse_url(url: str) -> tuple[str, Auth | None]:
    """(the URL without userinfo or fragment, credentials found in its userinfo)."""
    if not isinstance(url, str) or not url.strip() or len(url) > 2048 or any(_bad_char(c) for c in url):
        raise InvalidRequest(f"invalid repository URL {redact(str(url)[:200])!r}: give an http(s) URL without spaces")
    shown = redact(url[:200])
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme not in ("http", "https"):
        raise InvalidRequest(
            f"unsupported repository URL {shown!r}: use an https:// (or http://) URL such as "
            "https://github.com/owner/repo.git; ssh and git:// are not supported"
        )
    split = _split(url)
    if split is None:
        raise InvalidRequest(f"invalid repository URL {shown!r}: it has no valid host (e.g. https://host/owner/repo.git)")
    parts, host, port = split
    auth = None
    if parts.username is not None:
        auth = Auth(unquote(parts.username) or DEFAULT_TOKEN_USER, unquote(parts.password or ""))
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    return urlunsplit((parts.scheme.lower(), netloc, parts.path, parts.query, "")), auth


def origin_of(url: str) -> str:
    """scheme://host:port of a URL parse_url accepted: where credentials for it may go."""
    split = _split(url)
    if split is None:
        raise InvalidRequest(f"invalid repository URL {redact(url[:200])!r}")
    parts, host, port = split
    scheme = parts.scheme.lower()
    netloc = f"[{host}]" if ":" in host else host
    return f"{scheme}://{netloc}:{port or (443 if scheme == 'https' else 80)}"


def parse_host(value: str) -> str:
    """The origin a call names for its credentials: 'github.com' (https), 'host:8443' or a URL."""
    text = value.strip() if isinstance(value, str) else ""
    url = text if "://" in text else f"https://{text}"
    bad = not text or len(text) > 512 or any(_bad_char(c) for c in text) or "@" in text
    if bad or url.split(":", 1)[0].lower() not in ("http", "https") or _split(url) is None:
        raise InvalidRequest(
            f"invalid host {redact(str(value)[:100])!r}: give the host the credentials are for, e.g. 'github.com', "
            "'git.example.com:8443' or 'http://git.local:8080' (https unless the scheme says otherwise)"
        )
    return origin_of(url)


def repo_name(url: str) -> str:
    name = urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")
    return name if re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*$", name) else "repo"
