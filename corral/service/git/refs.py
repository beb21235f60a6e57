"""Checks of what the model names: branches, revisions, remotes, authors, paths, URLs."""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import unquote, urlsplit, urlunsplit

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


def parse_url(url: str) -> tuple[str, Auth | None]:
    """(the URL without userinfo or fragment, credentials found in its userinfo)."""
    shown = redact(url[:200])
    if not isinstance(url, str) or not url.strip() or len(url) > 2048 or any(c.isspace() for c in url):
        raise InvalidRequest(f"invalid repository URL {shown!r}: give an http(s) URL without spaces")
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidRequest(
            f"unsupported repository URL {shown!r}: use an https:// (or http://) URL such as "
            "https://github.com/owner/repo.git; ssh and git:// are not supported"
        )
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host, port = None, None
    if not host:
        raise InvalidRequest(f"invalid repository URL {shown!r}: it has no valid host")
    auth = None
    if parts.username is not None:
        auth = Auth(unquote(parts.username) or DEFAULT_TOKEN_USER, unquote(parts.password or ""))
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    return urlunsplit((parts.scheme.lower(), netloc, parts.path, parts.query, "")), auth


def repo_name(url: str) -> str:
    name = urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")
    return name if re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*$", name) else "repo"
