"""Git in a sandbox.

Local operations (status, diff, log, checkout, commit) run `git` in the sandbox through the agent's
`exec` op with an argv list: no shell ever parses a tool argument, and refs, names and paths are
validated before they get there.

Network operations (clone, pull, push) of a sandbox without network run in a *helper*: a
short-lived container of the sandbox's image, under gVisor with network (runtime corral-runsc-net on
the bridge network `corral-egress`), labelled like the sandbox so a reaper finds it, and removed
when the operation ends. The sandbox's own processes never get network access. Data crosses on the
host: into the helper with `put_archive` before it starts, out of it from an exec's stdout; into
and out of the sandbox through the agent (write_file / read_file in chunks under /tmp/.corral/git,
then tar or `git fetch <bundle>` inside), never behind gVisor's back. The helper gets only objects,
refs and the shallow list of the sandbox's repository, never its config or hooks, so nothing from
the sandbox runs where there is network. A sandbox created with network runs git directly.

Credentials reach git only through the environment of the one git process that needs them (an
`http.extraHeader` set with GIT_CONFIG_COUNT/KEY/VALUE): never in argv, a config file, a remote URL
or the store. Every text that leaves this module (results, errors, progress) goes through `redact`.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import logging
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import anyio
from pydantic import BaseModel, Field, SecretStr, field_validator

from corral.config import GIB, LABEL_NAMESPACE, MIB, RUNTIME_GVISOR_NET, RUNTIME_RUNC, SANDBOX_USER
from corral.errors import BackendError, CorralError, InvalidRequest, PayloadTooLarge, RuntimeMissing
from corral.sandbox_backend.docker_engine import ContainerSpec, ExecOutput, tar_directory
from corral.sandbox_backend.store import SandboxRecord
from corral.service.sandboxes import SandboxService
from corral.service.validation import check_path

log = logging.getLogger(__name__)

OnProgress = Callable[[float, float | None, str], Awaitable[None]]  # (progress, total, message)
Listener = Callable[[bytes], Coroutine[Any, Any, None]]  # gets stderr as it comes

EGRESS_NETWORK = "corral-egress"
STAGING = "/tmp/.corral/git"  # in the sandbox: transfers in flight
HELPER_WORK = "/tmp/corral-git"  # in the helper
CHUNK = 4 * MIB  # per agent frame (base64 of it stays well under the 16 MiB frame limit)
MAX_TRANSFER = 1 * GIB
MAX_STATUS_FILES = 1000
DEFAULT_AUTHOR = ("Corral Sandbox", "sandbox@corral.invalid")
DEFAULT_TOKEN_USER = "x-access-token"

# Every git process Corral starts: never prompt, never page, never open an editor.
GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "", "SSH_ASKPASS": "", "GIT_PAGER": "cat", "GIT_EDITOR": "true"}
# The helper ignores system and user config and speaks only http(s).
HELPER_ENV = {
    **GIT_ENV,
    "HOME": HELPER_WORK,
    "LANG": "C.UTF-8",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_ALLOW_PROTOCOL": "http:https",
}


# -- inputs and results ----------------------------------------------------------------------------


class GitCredentials(BaseModel):
    username: str | None = Field(
        default=None, description=f"User name; default '{DEFAULT_TOKEN_USER}', which suits an access token."
    )
    password: SecretStr = Field(description="Password or access token.")

    @field_validator("password", mode="before")
    @classmethod
    def _as_text(cls, value: Any) -> Any:
        # A rejected value would be echoed in the validation error: take anything as text instead.
        return value if isinstance(value, str | SecretStr) else str(value)


class GitCloneResult(BaseModel):
    path: str = Field(description="The repository's directory in the sandbox.")
    url: str = Field(description="The remote 'origin' (credentials are never stored in it).")
    branch: str | None = Field(description="Checked-out branch (null for an empty repository).")
    head: str | None = Field(description="Commit id of HEAD.")
    commits: int = Field(description="Commits reachable from HEAD (limited by depth if given).")
    shallow: bool
    via: Literal["helper", "direct"] = Field(
        description="helper: fetched by a short-lived networked helper (the sandbox has no network)."
    )


class GitFileChange(BaseModel):
    path: str
    change: Literal["modified", "added", "deleted", "renamed", "copied", "type-changed", "untracked", "conflicted"]
    staged: bool = Field(description="True: in the index (will be committed); false: only in the working tree.")
    orig_path: str | None = Field(default=None, description="Former path of a renamed or copied file.")


class GitStatus(BaseModel):
    repo: str
    branch: str | None = Field(description="Current branch; null when HEAD is detached.")
    head: str | None = Field(description="Commit id of HEAD; null before the first commit.")
    upstream: str | None = None
    ahead: int = 0
    behind: int = 0
    clean: bool = Field(description="No staged, unstaged, untracked or conflicted files.")
    files: list[GitFileChange]
    truncated: bool = False


class GitDiff(BaseModel):
    repo: str
    diff: str = Field(description="Unified diff; empty if nothing differs.")
    truncated: bool = Field(default=False, description="True if the middle of a long diff was cut.")


class GitCommitInfo(BaseModel):
    sha: str
    author: str
    email: str
    date: str = Field(description="Author date, ISO 8601.")
    subject: str


class GitLog(BaseModel):
    repo: str
    commits: list[GitCommitInfo]


class GitCheckoutResult(BaseModel):
    repo: str
    branch: str
    created: bool
    head: str | None


class GitCommitResult(BaseModel):
    repo: str
    sha: str
    branch: str | None
    summary: str = Field(description="git's change summary, e.g. '2 files changed, 5 insertions(+)'.")


class GitPushResult(BaseModel):
    repo: str
    remote: str
    url: str
    branch: str
    head: str
    result: Literal["pushed", "created", "forced", "up-to-date"]
    via: Literal["helper", "direct"]


class GitPullResult(BaseModel):
    repo: str
    remote: str
    branch: str = Field(description="The local branch that was updated.")
    remote_branch: str
    before: str | None
    after: str | None
    result: Literal["up-to-date", "fast-forward", "merged", "conflict"]
    conflicts: list[str] = Field(default_factory=list, description="Files with merge conflicts.")
    message: str | None = None
    via: Literal["helper", "direct"]


# -- redaction and credentials ---------------------------------------------------------------------

_USERINFO_RE = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]*@")
_AUTH_HEADER_RE = re.compile(r"(?i)(authorization:\s*[a-z]+\s+)[^\s'\"]+")


def redact(text: str, secret_values: Iterable[str] = ()) -> str:
    """`text` with every secret, any URL userinfo and any Authorization header value masked."""
    for secret in sorted({s for s in secret_values if s}, key=len, reverse=True):
        text = text.replace(secret, "***")
    text = _USERINFO_RE.sub(r"\1***@", text)
    return _AUTH_HEADER_RE.sub(r"\1***", text)


@dataclass(frozen=True)
class _Auth:
    username: str
    password: str

    @property
    def _basic(self) -> str:
        return base64.b64encode(f"{self.username}:{self.password}".encode()).decode()

    def env(self) -> dict[str, str]:
        """Config for one git process: the header, no redirects to elsewhere, no credential helper."""
        pairs = [
            ("http.extraHeader", f"Authorization: Basic {self._basic}"),
            ("http.followRedirects", "false"),
            ("credential.helper", ""),
        ]
        env = {"GIT_CONFIG_COUNT": str(len(pairs))}
        for i, (key, value) in enumerate(pairs):
            env[f"GIT_CONFIG_KEY_{i}"] = key
            env[f"GIT_CONFIG_VALUE_{i}"] = value
        return env

    @property
    def secrets(self) -> list[str]:
        values = [self.password, quote(self.password, safe=""), self._basic]
        if not self.password:  # a token given as the URL's user name
            values += [self.username, quote(self.username, safe="")]
        return [v for v in values if v]


def _auth_from(credentials: GitCredentials | None, url_auth: _Auth | None) -> _Auth | None:
    if credentials is None:
        return url_auth
    username = credentials.username or DEFAULT_TOKEN_USER
    password = credentials.password.get_secret_value()
    if "\n" in username + password or "\r" in username + password or ":" in username:
        raise InvalidRequest("credentials must not contain line breaks, and the user name no ':'")
    return _Auth(username, password)


def _secrets_of(*auths: _Auth | None) -> list[str]:
    return [s for a in auths if a is not None for s in a.secrets]


@contextlib.contextmanager
def _scrubbed(secret_values: Sequence[str]) -> Iterator[None]:
    """Whatever escapes carries no secret: Corral errors are re-raised redacted (and unchained, so
    no traceback shows the original), anything else becomes a generic BackendError."""
    try:
        yield
    except CorralError as exc:
        raise type(exc)(redact(str(exc), secret_values)) from None
    except Exception as exc:
        log.error("git operation failed: %s", redact(f"{type(exc).__name__}: {exc}", secret_values))
        raise BackendError(
            f"the git operation failed unexpectedly ({type(exc).__name__}); the server log has details"
        ) from None


# -- validation ------------------------------------------------------------------------------------

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


def parse_url(url: str) -> tuple[str, _Auth | None]:
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
        auth = _Auth(unquote(parts.username) or DEFAULT_TOKEN_USER, unquote(parts.password or ""))
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    return urlunsplit((parts.scheme.lower(), netloc, parts.path, parts.query, "")), auth


def repo_name(url: str) -> str:
    name = urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")
    return name if re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*$", name) else "repo"


# -- progress --------------------------------------------------------------------------------------

_PHASE_RE = re.compile(r"([A-Z][a-z]+(?: [a-z]+)*):\s+(\d{1,3})%")
# Where each of git's phases sits inside the span an operation gives git (fractions).
_PHASES = {
    "Counting objects": (0.0, 0.05),
    "Compressing objects": (0.05, 0.15),
    "Receiving objects": (0.15, 0.75),
    "Writing objects": (0.15, 0.9),
    "Resolving deltas": (0.75, 0.9),
    "Updating files": (0.9, 1.0),
}


class _Progress:
    """One rising 0..100 scale over git's phase percentages and Corral's own steps (MCP progress
    must only grow). Messages are redacted; a failing reporter never fails the operation."""

    def __init__(self, report: OnProgress | None, secret_values: Sequence[str]) -> None:
        self._report = report
        self._secrets = secret_values
        self.value = 0.0

    async def step(self, value: float, message: str) -> None:
        if self._report is None or value <= self.value:
            return
        self.value = value
        try:
            await self._report(round(value, 1), 100.0, redact(message, self._secrets)[:300])
        except Exception as exc:
            log.debug("progress report failed: %r", exc)

    def git(self, start: float, end: float) -> Listener:
        """A stderr listener that maps git's --progress lines into [start, end]."""
        pending = ""

        async def listen(data: bytes) -> None:
            nonlocal pending
            pending += data.decode(errors="replace")
            *lines, pending = re.split(r"[\r\n]", pending)
            for line in lines:
                match = _PHASE_RE.search(line)
                if match and match.group(1) in _PHASES:
                    lo, hi = _PHASES[match.group(1)]
                    frac = lo + (hi - lo) * min(int(match.group(2)), 100) / 100
                    await self.step(start + (end - start) * frac, line.strip())

        return listen


# -- running git in the sandbox ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Run:
    exit_code: int | None
    stdout: str
    stderr: str
    dropped: int
    timed_out: bool

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def text(self) -> str:
        return (self.stderr.strip() or self.stdout.strip())[-2000:]


async def _run(
    service: SandboxService,
    ref: str,
    argv: Sequence[str],
    *,
    cwd: str = "/workspace",
    env: dict[str, str] | None = None,
    stdin: bytes | None = None,
    max_output: int | None = None,
    on_stderr: Listener | None = None,
) -> _Run:
    limit = service.settings.exec.max_timeout
    params: dict[str, Any] = {
        "argv": list(argv),
        "cwd": cwd,
        "env": {**GIT_ENV, **(env or {})},
        "timeout": limit,
        "max_output": max_output or service.settings.exec.output_limit * 2,
        "stream": on_stderr is not None,
    }
    if stdin is not None:
        params["stdin_b64"] = base64.b64encode(stdin).decode()

    async def on_event(event: dict[str, Any]) -> None:
        if on_stderr is not None and event.get("event") == "output" and event.get("stream") == "stderr":
            await on_stderr(str(event.get("data", "")).encode())

    try:
        res = await service.request(ref, "exec", params, timeout=limit + 15, on_event=on_event)
    except InvalidRequest as exc:
        if "working directory" in str(exc):
            raise InvalidRequest(f"{cwd} does not exist or is not a directory in the sandbox") from None
        if "executable not found" in str(exc):
            raise InvalidRequest(f"{argv[0]} is not installed in this sandbox's image") from None
        raise
    return _Run(
        exit_code=res.get("exit_code"),
        stdout=str(res.get("stdout", "")),
        stderr=str(res.get("stderr", "")),
        dropped=int(res.get("stdout_dropped", 0) or 0),
        timed_out=bool(res.get("timed_out", False)),
    )


async def _git(service: SandboxService, ref: str, repo: str, *args: str, **kwargs: Any) -> _Run:
    return await _run(service, ref, ["git", *args], cwd=repo, **kwargs)


async def _git_ok(service: SandboxService, ref: str, repo: str, *args: str, **kwargs: Any) -> _Run:
    res = await _git(service, ref, repo, *args, **kwargs)
    if not res.ok:
        raise _failure(f"git {args[0]}", res, repo=repo)
    return res


def _failure(
    what: str, res: _Run | ExecOutput, *, url: str | None = None, repo: str | None = None, sent_auth: bool = False
) -> CorralError:
    """A git failure as an error the model can act on (callers redact it on the way out)."""
    code: int | None
    if isinstance(res, ExecOutput):
        text = res.stderr.decode(errors="replace").strip() or res.stdout.decode(errors="replace").strip()
        text, code, timed_out = text[-2000:], res.exit_code, False
    else:
        text, code, timed_out = res.text, res.exit_code, res.timed_out
    low = text.lower()
    target = url or "the remote"
    if timed_out:
        return InvalidRequest(f"{what} timed out and was stopped; output so far:\n{text}")
    if code in (126, 127) and "git" in low and ("not found" in low or "no such file" in low):
        return InvalidRequest("git is not installed in this sandbox's image; use an image with git")
    if "not a git repository" in low and repo and "does not appear" not in low:
        return InvalidRequest(
            f"{repo} is not inside a git repository: clone one with git_clone, or run `git init` there"
        )
    asked = "terminal prompts disabled" in low or "could not read username" in low or "could not read password" in low
    if asked and not sent_auth:
        return InvalidRequest(
            f"{target} requires authentication: pass credentials "
            "{'username': ..., 'password': <password or access token>}"
        )
    if asked or any(s in low for s in ("authentication failed", "access denied", "error: 401", "error: 403")):
        return InvalidRequest(
            f"authentication failed for {target}: the server rejected the credentials; check the user "
            "name and the password or token (and that it may access this repository)"
        )
    if ("repository" in low and "not found" in low) or "error: 404" in low or "does not appear to be a git" in low:
        return InvalidRequest(f"no git repository at {target}: check the URL")
    if "could not resolve host" in low:
        return InvalidRequest(f"cannot resolve the host of {target}: check the URL")
    if any(s in low for s in ("failed to connect", "connection refused", "couldn't connect", "timed out")):
        return InvalidRequest(f"cannot connect to {target}: the server is unreachable from here")
    return InvalidRequest(f"{what} failed (exit {code}):\n{text}")


# -- moving bytes between the host and the sandbox ---------------------------------------------------


async def _upload(
    service: SandboxService, ref: str, data: bytes, progress: _Progress, span: tuple[float, float], suffix: str
) -> str:
    path = f"{STAGING}/{secrets.token_hex(6)}{suffix}"
    total = max(len(data), 1)
    for offset in range(0, max(len(data), 1), CHUNK):
        chunk = data[offset : offset + CHUNK]
        params = {"path": path, "data_b64": base64.b64encode(chunk).decode(), "mkdirs": True, "append": offset > 0}
        await service.request(ref, "write_file", params, timeout=120)
        done = offset + len(chunk)
        await progress.step(
            span[0] + (span[1] - span[0]) * done / total,
            f"copying into the sandbox: {done / MIB:.1f} of {len(data) / MIB:.1f} MiB",
        )
    return path


async def _download(service: SandboxService, ref: str, path: str) -> bytes:
    data = bytearray()
    while True:
        res = await service.request(
            ref, "read_file", {"path": path, "offset": len(data), "max_bytes": CHUNK}, timeout=120
        )
        chunk = base64.b64decode(str(res.get("data_b64", "")))
        data += chunk
        if len(data) > MAX_TRANSFER:
            raise PayloadTooLarge(f"the repository is larger than {MAX_TRANSFER // MIB} MiB, Corral's transfer limit")
        if not chunk or len(data) >= int(res.get("size", 0)):
            return bytes(data)


async def _remove_staged(service: SandboxService, ref: str, path: str) -> None:
    with anyio.CancelScope(shield=True):
        try:
            await _run(service, ref, ["rm", "-f", "--", path], cwd="/")
        except CorralError as exc:
            log.debug("could not remove %s: %s", path, exc)


# Objects, refs and the shallow list: the data of a repository, none of its config or hooks.
_PACK_SCRIPT = r"""
set -e
cd "$1"
cd "$(git rev-parse --git-common-dir)"
out=$2
set --
for f in objects refs packed-refs shallow HEAD; do
  if [ -e "$f" ]; then set -- "$@" "$f"; fi
done
mkdir -p "$(dirname "$out")"
tar -cf "$out" "$@"
"""


async def _pack_repo(service: SandboxService, ref: str, repo: str, progress: _Progress, at: float) -> bytes:
    path = f"{STAGING}/{secrets.token_hex(6)}.tar"
    try:
        res = await _run(service, ref, ["sh", "-c", _PACK_SCRIPT, "sh", repo, path], cwd=repo)
        if not res.ok:
            raise _failure("packing the repository", res, repo=repo)
        data = await _download(service, ref, path)
    finally:
        await _remove_staged(service, ref, path)
    await progress.step(at, f"read the repository from the sandbox ({len(data) / MIB:.1f} MiB)")
    return data


# Give the copied objects and refs a fresh config of the helper's own; no alternates from the sandbox.
_HELPER_INIT = "git init -q --bare repo.git && rm -f repo.git/objects/info/alternates"


# -- the helper container ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Helper:
    service: SandboxService
    container_id: str

    async def run(
        self,
        argv: Sequence[str],
        *,
        auth: _Auth | None = None,
        on_stderr: Listener | None = None,
        max_stdout: int = 4 * MIB,
    ) -> ExecOutput:
        limit = self.service.settings.exec.max_timeout
        try:
            with anyio.fail_after(limit):
                return await self.service.engine.exec_collect(
                    self.container_id,
                    argv,
                    user=SANDBOX_USER,
                    workdir=HELPER_WORK,
                    env=auth.env() if auth else None,
                    on_stderr=on_stderr,
                    max_stdout=max_stdout,
                )
        except TimeoutError:
            raise InvalidRequest(
                f"{argv[0]} {argv[1] if len(argv) > 1 else ''} did not finish within {limit:g} s"
            ) from None
        except PayloadTooLarge:
            raise PayloadTooLarge(
                f"the repository is larger than {max_stdout // MIB} MiB, Corral's transfer limit"
            ) from None


async def check_destination(url: str, allowed: Sequence[str]) -> None:
    """Refuse to send the networked helper to a non-public address unless the operator allowed it."""
    host = urlsplit(url).hostname or ""
    try:
        infos = await anyio.getaddrinfo(host, None)
    except OSError as exc:
        raise InvalidRequest(f"cannot resolve the host {host!r} of the repository URL ({exc})") from None
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if (
            address.is_global
            or host in allowed
            or any("/" in entry and address in ipaddress.ip_network(entry, strict=False) for entry in allowed)
            or str(address) in allowed
        ):
            continue
        raise InvalidRequest(
            f"refusing to reach {host} ({address}): it is a private, loopback or link-local address. "
            "The operator can allow it with CORRAL_GIT_ALLOW_PRIVATE (hosts, IPs or CIDRs, comma-separated)."
        )


@asynccontextmanager
async def _helper(
    service: SandboxService,
    rec: SandboxRecord,
    inputs: Sequence[tuple[str, bytes]] = (),
    *,
    destination: str,
) -> AsyncIterator[_Helper]:
    """A networked container of the sandbox's image; `inputs` are (directory, tar) pairs copied in
    before it starts. Always removed, also on failure or cancellation."""
    await check_destination(destination, service.settings.git_allow_private)
    engine = service.engine
    runtime = RUNTIME_RUNC if service.settings.unsafe_runc else RUNTIME_GVISOR_NET
    if runtime != RUNTIME_RUNC and runtime not in await engine.runtimes():
        raise RuntimeMissing(
            f"the gVisor runtime '{runtime}' (runsc with --network=host) is not registered with Docker, so "
            "Corral cannot fetch for a sandbox without network. Fix: run scripts/setup-host.sh as root."
        )
    await engine.ensure_network(
        EGRESS_NETWORK, {f"{LABEL_NAMESPACE}.managed": "true", f"{LABEL_NAMESPACE}.role": "egress"}
    )
    # Not the sandbox label: reconciliation maps that label to the sandbox's own container.
    labels = {k: v for k, v in service.labels_for(rec.id).items() if k != f"{LABEL_NAMESPACE}.sandbox"}
    labels |= {f"{LABEL_NAMESPACE}.role": "git-helper", f"{LABEL_NAMESPACE}.helper-for": rec.id}
    spec = ContainerSpec(
        name=f"corral-git-{rec.id}-{secrets.token_hex(3)}",
        image=rec.image,
        runtime=runtime,
        labels=labels,
        memory_bytes=rec.memory_bytes,
        nano_cpus=int(rec.cpus * 1e9),
        pids_limit=rec.pids_limit,
        user=SANDBOX_USER,
        workdir="/tmp",
        env=HELPER_ENV,
        network=EGRESS_NETWORK,
        hostname="corral-git",
    )
    container_id: str | None = None
    try:
        container_id = await engine.create_container(spec)
        await engine.put_archive(container_id, "/", tar_directory(HELPER_WORK, 1000, 1000))
        for directory, data in inputs:
            await engine.put_archive(container_id, "/", tar_directory(directory, 1000, 1000))
            await engine.put_archive(container_id, directory, data)
        await engine.start(container_id)
        log.debug("git helper %s started for %s", spec.name, rec.id)
        yield _Helper(service, container_id)
    finally:
        if container_id is not None:
            with anyio.CancelScope(shield=True):
                try:
                    await engine.remove(container_id)
                except CorralError as exc:
                    log.warning("could not remove git helper %s: %s", spec.name, exc)


async def _missing_branch_error(helper: _Helper, url: str, auth: _Auth | None, branch: str) -> CorralError:
    res = await helper.run(["git", "ls-remote", "--heads", "--", url], auth=auth)
    names = [
        line.split("refs/heads/", 1)[1]
        for line in res.stdout.decode(errors="replace").splitlines()
        if "refs/heads/" in line
    ]
    listing = ", ".join(names[:50]) or "none (the repository is empty)"
    return InvalidRequest(f"branch {branch!r} does not exist in {url}; its branches are: {listing}")


def _is_missing_branch(text: str) -> bool:
    low = text.lower()
    return ("remote branch" in low and "not found" in low) or "couldn't find remote ref" in low


# -- facts about a repository in the sandbox -----------------------------------------------------------

_INFO_SCRIPT = r"""
cd "$1" || exit 3
git rev-parse --git-dir >/dev/null || exit 4
echo "branch=$(git symbolic-ref -q --short HEAD)"
echo "head=$(git rev-parse -q --verify HEAD)"
echo "shallow=$(git rev-parse --is-shallow-repository)"
if [ -n "$2" ]; then echo "count=$(git rev-list --count HEAD 2>/dev/null)"; fi
if [ -n "$3" ]; then
  echo "url=$(git config --get "remote.$3.url")"
  echo "remotes=$(git remote | tr '\n' ' ')"
fi
if [ -n "$4" ]; then
  echo "upstream_remote=$(git config --get "branch.$4.remote")"
  echo "upstream_merge=$(git config --get "branch.$4.merge")"
  echo "branch_head=$(git rev-parse -q --verify "refs/heads/$4")"
fi
"""


async def _info(
    service: SandboxService, ref: str, repo: str, *, count: bool = False, remote: str = "", branch: str = ""
) -> dict[str, str]:
    res = await _run(
        service, ref, ["sh", "-c", _INFO_SCRIPT, "sh", repo, "1" if count else "", remote, branch], cwd="/"
    )
    if res.exit_code == 3:
        raise InvalidRequest(f"{repo} does not exist or is not a directory in the sandbox")
    if res.exit_code == 4:
        raise _failure("git", res, repo=repo)
    if not res.ok:
        raise _failure("reading the repository", res, repo=repo)
    return dict(line.split("=", 1) for line in res.stdout.splitlines() if "=" in line)


def _current_branch(info: dict[str, str], branch: str | None, repo: str, op: str) -> str:
    if branch:
        return check_branch(branch)
    if not info.get("branch"):
        raise InvalidRequest(f"HEAD of {repo} is detached: switch to a branch (git_checkout) or name one to {op}")
    return info["branch"]


def _remote_url(info: dict[str, str], remote: str, repo: str) -> str:
    url = info.get("url", "")
    if not url:
        known = info.get("remotes", "").split() or ["none"]
        raise InvalidRequest(f"{repo} has no remote named {remote!r}; its remotes: {', '.join(known)}")
    return url


async def _identity_env(service: SandboxService, ref: str, repo: str, author: tuple[str, str] | None) -> dict[str, str]:
    """Fill in a name and email only where the repository's config has none, so commits never fail
    for want of an identity and a configured one always wins."""
    res = await _git(service, ref, repo, "config", "--get-regexp", r"^user\.(name|email)$")
    configured = {line.split(" ", 1)[0].lower() for line in res.stdout.splitlines()}
    name, email = author or DEFAULT_AUTHOR
    env = {}
    if "user.name" not in configured:
        env["GIT_COMMITTER_NAME"] = name
        env["GIT_AUTHOR_NAME"] = name
    if "user.email" not in configured:
        env["GIT_COMMITTER_EMAIL"] = email
        env["GIT_AUTHOR_EMAIL"] = email
    return env


# -- clone -------------------------------------------------------------------------------------------

_DEST_SCRIPT = r"""
if [ -e "$1" ] && { [ ! -d "$1" ] || [ -n "$(ls -A "$1")" ]; }; then exit 1; fi
"""
_UNPACK_SCRIPT = r"""
mkdir -p -- "$2" && tar -x -f "$1" -C "$2"
status=$?
rm -f -- "$1"
exit $status
"""


async def clone(
    service: SandboxService,
    ref: str,
    url: str,
    *,
    path: str | None = None,
    branch: str | None = None,
    depth: int | None = None,
    credentials: GitCredentials | None = None,
    on_progress: OnProgress | None = None,
) -> GitCloneResult:
    clean_url, url_auth = parse_url(url)
    auth = _auth_from(credentials, url_auth)
    hidden = _secrets_of(auth, url_auth)
    with _scrubbed(hidden):
        dest = check_path(path or f"/workspace/{repo_name(clean_url)}").rstrip("/") or "/"
        if branch is not None:
            check_branch(branch)
        check_depth(depth)
        progress = _Progress(on_progress, hidden)
        rec = await service.use(ref)
        dest_res = await _run(service, ref, ["sh", "-c", _DEST_SCRIPT, "sh", dest], cwd="/")
        if not dest_res.ok:
            raise InvalidRequest(f"{dest} already exists and is not an empty directory; choose another path")
        options = ["--progress", *(["--branch", branch] if branch else []), *(["--depth", str(depth)] if depth else [])]
        if rec.network != "none":
            via: Literal["helper", "direct"] = "direct"
            res = await _run(
                service,
                ref,
                ["git", "clone", *options, "--", clean_url, dest],
                env=auth.env() if auth else None,
                on_stderr=progress.git(0, 95),
            )
            if not res.ok:  # git itself removes what it created
                if branch and _is_missing_branch(res.text):
                    raise InvalidRequest(f"branch {branch!r} does not exist in {clean_url}")
                raise _failure("git clone", res, url=clean_url, sent_auth=auth is not None)
        else:
            via = "helper"
            async with _helper(service, rec, destination=clean_url) as helper:
                await progress.step(1, "started a networked helper")
                out = await helper.run(
                    ["git", "clone", *options, "--", clean_url, f"{HELPER_WORK}/repo"],
                    auth=auth,
                    on_stderr=progress.git(2, 60),
                )
                if out.exit_code != 0:
                    if branch and _is_missing_branch(out.stderr.decode(errors="replace")):
                        raise await _missing_branch_error(helper, clean_url, auth, branch)
                    raise _failure("git clone", out, url=clean_url, sent_auth=auth is not None)
                packed = await helper.run(["tar", "-c", "-C", f"{HELPER_WORK}/repo", "."], max_stdout=MAX_TRANSFER)
                if packed.exit_code != 0:
                    raise _failure("packing the clone", packed)
            await progress.step(62, f"cloned; copying {len(packed.stdout) / MIB:.1f} MiB into the sandbox")
            staged = await _upload(service, ref, packed.stdout, progress, (62, 95), ".tar")
            try:
                res = await _run(service, ref, ["sh", "-c", _UNPACK_SCRIPT, "sh", staged, dest], cwd="/")
            finally:
                await _remove_staged(service, ref, staged)
            if not res.ok:
                raise _failure("unpacking the clone", res)
            # The index holds the helper's file stat data: refresh it so status is accurate and fast.
            await _git(service, ref, dest, "update-index", "-q", "--refresh")
        info = await _info(service, ref, dest, count=True)
        await progress.step(100, f"cloned into {dest}")
        return GitCloneResult(
            path=dest,
            url=clean_url,
            branch=info.get("branch") or None,
            head=info.get("head") or None,
            commits=int(info.get("count") or 0),
            shallow=info.get("shallow") == "true",
            via=via,
        )


# -- local operations ----------------------------------------------------------------------------------

_CHANGES = {"M": "modified", "A": "added", "D": "deleted", "R": "renamed", "C": "copied", "T": "type-changed"}
_OMITTED_RE = re.compile(r"\n\[\.\.\. \d+ bytes omitted \.\.\.\]\n")


def parse_status(text: str, repo: str, limit: int = MAX_STATUS_FILES) -> GitStatus:
    """`git status --porcelain=v2 --branch -z` output as a GitStatus."""
    branch = head = upstream = None
    ahead = behind = 0
    files: list[GitFileChange] = []
    truncated = False
    fields = iter(text.split("\0"))
    for entry in fields:
        if entry.startswith("# branch.oid "):
            oid = entry.split(" ", 2)[2]
            head = None if oid == "(initial)" else oid
        elif entry.startswith("# branch.head "):
            name = entry.split(" ", 2)[2]
            branch = None if name == "(detached)" else name
        elif entry.startswith("# branch.upstream "):
            upstream = entry.split(" ", 2)[2]
        elif entry.startswith("# branch.ab "):
            parts = entry.split(" ")
            ahead, behind = int(parts[2].lstrip("+")), int(parts[3].lstrip("-"))
        elif entry[:2] in ("1 ", "2 ", "u ", "? "):
            kind = entry[0]
            if kind == "?":
                new = [GitFileChange(path=entry[2:], change="untracked", staged=False)]
            elif kind == "u":
                new = [GitFileChange(path=entry.split(" ", 10)[10], change="conflicted", staged=False)]
            else:
                parts = entry.split(" ", 9 if kind == "2" else 8)
                xy, path = parts[1], parts[-1]
                orig = next(fields, None) if kind == "2" else None
                new = [
                    GitFileChange(path=path, change=_CHANGES.get(code, "modified"), staged=staged, orig_path=orig)  # type: ignore[arg-type]
                    for code, staged in ((xy[0], True), (xy[1], False))
                    if code != "."
                ]
            room = limit - len(files)
            truncated = truncated or len(new) > room
            files += new[: max(room, 0)]
    return GitStatus(
        repo=repo,
        branch=branch,
        head=head,
        upstream=upstream,
        ahead=ahead,
        behind=behind,
        clean=not files,
        files=files,
        truncated=truncated,
    )


async def status(service: SandboxService, ref: str, repo: str) -> GitStatus:
    repo = check_path(repo)
    res = await _git_ok(
        service,
        ref,
        repo,
        "status",
        "--porcelain=v2",
        "--branch",
        "-z",
        "--untracked-files=normal",
        env={"GIT_OPTIONAL_LOCKS": "0"},
        max_output=1 * MIB,
    )
    text = _OMITTED_RE.split(res.stdout, maxsplit=1)[0] if res.dropped else res.stdout
    result = parse_status(text, repo)
    if res.dropped:
        result = result.model_copy(update={"truncated": True, "clean": False})
    return result


async def diff(
    service: SandboxService,
    ref: str,
    repo: str,
    *,
    paths: Sequence[str] | None = None,
    staged: bool = False,
    base: str | None = None,
) -> GitDiff:
    repo = check_path(repo)
    args = ["diff", "--no-color", "--no-ext-diff", *(["--cached"] if staged else [])]
    if base is not None:
        args.append(check_rev(base))
    res = await _git_ok(service, ref, repo, *args, "--", *check_repo_paths(paths))
    return GitDiff(repo=repo, diff=res.stdout, truncated=res.dropped > 0)


async def log_(
    service: SandboxService,
    ref: str,
    repo: str,
    *,
    max_count: int = 20,
    rev: str | None = None,
    paths: Sequence[str] | None = None,
) -> GitLog:
    repo = check_path(repo)
    if not 1 <= max_count <= 1000:
        raise InvalidRequest(f"max_count must be between 1 and 1000 (got {max_count})")
    args = ["log", f"--max-count={max_count}", "--format=%H%x1f%an%x1f%ae%x1f%aI%x1f%s%x1e"]
    if rev is not None:
        args.append(check_rev(rev))
    res = await _git(service, ref, repo, *args, "--", *check_repo_paths(paths), max_output=1 * MIB)
    if not res.ok:
        if "does not have any commits yet" in res.text:
            return GitLog(repo=repo, commits=[])
        if "unknown revision" in res.text or "bad revision" in res.text:
            raise InvalidRequest(f"unknown revision {rev!r} in {repo}: give an existing branch, tag or commit")
        raise _failure("git log", res, repo=repo)
    commits = []
    for record in res.stdout.split("\x1e"):
        parts = record.strip("\n").split("\x1f")
        if len(parts) == 5:
            commits.append(
                GitCommitInfo(sha=parts[0], author=parts[1], email=parts[2], date=parts[3], subject=parts[4])
            )
    return GitLog(repo=repo, commits=commits)


async def checkout(
    service: SandboxService, ref: str, repo: str, branch: str, *, create: bool = False, start_point: str | None = None
) -> GitCheckoutResult:
    repo = check_path(repo)
    check_branch(branch)
    if start_point is not None and not create:
        raise InvalidRequest("start_point only applies when creating a branch (create=true)")
    args = ["switch", "-c", branch] if create else ["switch", branch]
    if start_point is not None:
        args.append(check_rev(start_point))
    res = await _git(service, ref, repo, *args)
    if not res.ok:
        low = res.text.lower()
        if "already exists" in low:
            raise InvalidRequest(f"branch {branch!r} already exists in {repo}; switch to it with create=false")
        if "invalid reference" in low:
            target = start_point if create else branch
            listing = await _git(service, ref, repo, "branch", "-a", "--format=%(refname:short)")
            names = ", ".join(listing.stdout.split()[:50]) or "none"
            hint = "" if create else "; pass create=true to make a new branch"
            raise InvalidRequest(f"no branch or commit {target!r} in {repo}{hint}. Branches: {names}")
        if "would be overwritten" in low:
            raise InvalidRequest(
                f"cannot switch to {branch!r}: uncommitted changes in {repo} would be overwritten; "
                f"commit them (git_commit) or discard them first.\n{res.text}"
            )
        raise _failure("git switch", res, repo=repo)
    info = await _info(service, ref, repo)
    return GitCheckoutResult(repo=repo, branch=branch, created=create, head=info.get("head") or None)


async def commit(
    service: SandboxService,
    ref: str,
    repo: str,
    message: str,
    *,
    author: str | None = None,
    paths: Sequence[str] | None = None,
) -> GitCommitResult:
    repo = check_path(repo)
    if not message.strip():
        raise InvalidRequest("message is empty; describe the change, e.g. 'Fix the parser for empty input'")
    if len(message.encode()) > 64 * 1024:
        raise InvalidRequest("message is longer than 64 KiB")
    identity = check_author(author) if author is not None else None
    if paths is None:
        await _git_ok(service, ref, repo, "add", "-A")
    elif paths:
        await _git_ok(service, ref, repo, "add", "-A", "--", *check_repo_paths(paths))
    env = await _identity_env(service, ref, repo, identity)
    args = ["commit", "-q", "-F", "-"]
    if identity is not None:
        args.append(f"--author={identity[0]} <{identity[1]}>")
    res = await _git(service, ref, repo, *args, env=env, stdin=message.encode())
    if not res.ok:
        if "nothing to commit" in res.stdout + res.stderr or "no changes added" in res.stdout + res.stderr:
            what = "no staged changes" if paths == [] else "nothing changed"
            raise InvalidRequest(f"nothing to commit in {repo}: {what} (git_status shows the state)")
        raise _failure("git commit", res, repo=repo)
    stat = await _git_ok(service, ref, repo, "show", "--no-color", "--shortstat", "--format=%H", "HEAD")
    lines = [line.strip() for line in stat.stdout.splitlines() if line.strip()]
    info = await _info(service, ref, repo)
    return GitCommitResult(
        repo=repo, sha=lines[0], branch=info.get("branch") or None, summary=lines[1] if len(lines) > 1 else ""
    )


# -- push and pull -----------------------------------------------------------------------------------

_PUSH_FLAGS = {" ": "pushed", "*": "created", "+": "forced", "=": "up-to-date"}


def parse_push(stdout: str) -> tuple[str, str] | None:
    """(flag, summary) of the first ref line of `git push --porcelain`."""
    for line in stdout.splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and len(parts[0]) == 1:
            return parts[0], parts[2]
    return None


def _push_outcome(
    out_text: str, err_text: str, code: int | None, url: str, remote: str, branch: str, sent_auth: bool
) -> str:
    parsed = parse_push(out_text)
    if parsed is not None and parsed[0] in _PUSH_FLAGS and code == 0:
        return _PUSH_FLAGS[parsed[0]]
    if parsed is not None and parsed[0] == "!":
        summary = parsed[1]
        if "fetch first" in summary or "non-fast-forward" in summary:
            raise InvalidRequest(
                f"push rejected: {remote}/{branch} has commits that your {branch} lacks; git_pull first, "
                "then push again (or push with force=true to overwrite them)"
            )
        raise InvalidRequest(f"push of {branch} to {url} rejected: {summary}\n{err_text[-1500:]}")
    raise _failure("git push", _Run(code, out_text, err_text, 0, False), url=url, sent_auth=sent_auth)


_AFTER_PUSH_SCRIPT = r"""
cd "$1" || exit 3
git update-ref "refs/remotes/$2/$3" "$4"
if [ -z "$(git config --get "branch.$3.remote")" ]; then
  git config "branch.$3.remote" "$2" && git config "branch.$3.merge" "refs/heads/$3"
fi
"""


async def push(
    service: SandboxService,
    ref: str,
    repo: str,
    *,
    remote: str = "origin",
    branch: str | None = None,
    credentials: GitCredentials | None = None,
    force: bool = False,
    on_progress: OnProgress | None = None,
) -> GitPushResult:
    repo = check_path(repo)
    check_remote(remote)
    if branch is not None:
        check_branch(branch)
    auth = _auth_from(credentials, None)
    hidden = _secrets_of(auth)
    with _scrubbed(hidden):
        progress = _Progress(on_progress, hidden)
        rec = await service.use(ref)
        info = await _info(service, ref, repo, remote=remote, branch=branch or "")
        name = _current_branch(info, branch, repo, "push")
        if branch is None:
            info = await _info(service, ref, repo, remote=remote, branch=name)
        if not info.get("branch_head"):
            raise InvalidRequest(f"{repo} has no branch {name!r} with commits to push")
        url, url_auth = parse_url(_remote_url(info, remote, repo))
        auth = auth or url_auth
        hidden += _secrets_of(url_auth)
        refspec = f"{'+' if force else ''}refs/heads/{name}:refs/heads/{name}"
        if rec.network != "none":
            via: Literal["helper", "direct"] = "direct"
            res = await _git(
                service,
                ref,
                repo,
                "push",
                "--progress",
                "--porcelain",
                "--",
                remote,
                refspec,
                env=auth.env() if auth else None,
                on_stderr=progress.git(0, 95),
            )
            outcome = _push_outcome(res.stdout, res.stderr, res.exit_code, url, remote, name, auth is not None)
        else:
            via = "helper"
            data = await _pack_repo(service, ref, repo, progress, 30)
            async with _helper(service, rec, [(f"{HELPER_WORK}/repo.git", data)], destination=url) as helper:
                init = await helper.run(["sh", "-c", _HELPER_INIT])
                if init.exit_code != 0:
                    raise _failure("preparing the push", init)
                out = await helper.run(
                    ["git", "--git-dir=repo.git", "push", "--progress", "--porcelain", "--", url, refspec],
                    auth=auth,
                    on_stderr=progress.git(32, 95),
                )
            outcome = _push_outcome(
                out.stdout.decode(errors="replace"),
                out.stderr.decode(errors="replace"),
                out.exit_code,
                url,
                remote,
                name,
                auth is not None,
            )
        head = info["branch_head"]
        await _run(service, ref, ["sh", "-c", _AFTER_PUSH_SCRIPT, "sh", repo, remote, name, head], cwd="/")
        await progress.step(100, f"{outcome}: {name} -> {remote}")
        return GitPushResult(repo=repo, remote=remote, url=url, branch=name, head=head, result=outcome, via=via)  # type: ignore[arg-type]


async def pull(
    service: SandboxService,
    ref: str,
    repo: str,
    *,
    remote: str = "origin",
    branch: str | None = None,
    credentials: GitCredentials | None = None,
    on_progress: OnProgress | None = None,
) -> GitPullResult:
    repo = check_path(repo)
    check_remote(remote)
    if branch is not None:
        check_branch(branch, "remote branch")
    auth = _auth_from(credentials, None)
    hidden = _secrets_of(auth)
    with _scrubbed(hidden):
        progress = _Progress(on_progress, hidden)
        rec = await service.use(ref)
        info = await _info(service, ref, repo, remote=remote)
        local = _current_branch(info, None, repo, "pull into")
        info = await _info(service, ref, repo, remote=remote, branch=local)
        upstream = info.get("upstream_merge", "")
        if branch is None and upstream.startswith("refs/heads/") and info.get("upstream_remote") == remote:
            branch = upstream.removeprefix("refs/heads/")
        remote_branch = branch or local
        url, url_auth = parse_url(_remote_url(info, remote, repo))
        auth = auth or url_auth
        hidden += _secrets_of(url_auth)
        tracking = f"refs/remotes/{remote}/{remote_branch}"
        before = info.get("head") or None
        if rec.network != "none":
            via: Literal["helper", "direct"] = "direct"
            res = await _git(
                service,
                ref,
                repo,
                "fetch",
                "--progress",
                "--",
                remote,
                f"+refs/heads/{remote_branch}:{tracking}",
                env=auth.env() if auth else None,
                on_stderr=progress.git(0, 90),
            )
            if not res.ok:
                if _is_missing_branch(res.text):
                    raise InvalidRequest(f"branch {remote_branch!r} does not exist in {url}")
                raise _failure("git fetch", res, url=url, sent_auth=auth is not None)
        else:
            via = "helper"
            await _fetch_via_helper(service, ref, rec, repo, url, auth, remote_branch, tracking, progress)
        return await _merge(service, ref, repo, url, remote, local, remote_branch, tracking, before, via, progress)


_FETCHED = "refs/corral/fetched"


async def _fetch_via_helper(
    service: SandboxService,
    ref: str,
    rec: SandboxRecord,
    repo: str,
    url: str,
    auth: _Auth | None,
    remote_branch: str,
    tracking: str,
    progress: _Progress,
) -> None:
    """Fetch `remote_branch` in a helper that holds the sandbox's objects (so only what is new is
    downloaded), then bring just the new objects back as a bundle and update `tracking`."""
    data = await _pack_repo(service, ref, repo, progress, 20)
    bundle = b""
    async with _helper(service, rec, [(f"{HELPER_WORK}/repo.git", data)], destination=url) as helper:
        init = await helper.run(["sh", "-c", _HELPER_INIT])
        if init.exit_code != 0:
            raise _failure("preparing the fetch", init)
        out = await helper.run(
            [
                "git",
                "--git-dir=repo.git",
                "fetch",
                "--progress",
                "--no-tags",
                "--",
                url,
                f"+refs/heads/{remote_branch}:{_FETCHED}",
            ],
            auth=auth,
            on_stderr=progress.git(22, 75),
        )
        if out.exit_code != 0:
            if _is_missing_branch(out.stderr.decode(errors="replace")):
                raise await _missing_branch_error(helper, url, auth, remote_branch)
            raise _failure("git fetch", out, url=url, sent_auth=auth is not None)
        known = ["--not", "--branches", "--remotes", "--tags"]
        sha = (await helper.run(["git", "--git-dir=repo.git", "rev-parse", _FETCHED])).stdout.decode().strip()
        new = await helper.run(["git", "--git-dir=repo.git", "rev-list", "-n1", _FETCHED, *known])
        if new.stdout.strip():
            made = await helper.run(
                ["git", "--git-dir=repo.git", "bundle", "create", "-", _FETCHED, *known], max_stdout=MAX_TRANSFER
            )
            if made.exit_code != 0:
                raise _failure("bundling the fetched commits", made)
            bundle = made.stdout
    if bundle:
        staged = await _upload(service, ref, bundle, progress, (76, 90), ".bundle")
        try:
            res = await _git(service, ref, repo, "fetch", "-q", "--no-tags", staged, f"+{_FETCHED}:{tracking}")
        finally:
            await _remove_staged(service, ref, staged)
        if not res.ok:
            raise _failure("unbundling the fetched commits", res, repo=repo)
    else:
        await _git_ok(service, ref, repo, "update-ref", tracking, sha)


async def _merge(
    service: SandboxService,
    ref: str,
    repo: str,
    url: str,
    remote: str,
    local: str,
    remote_branch: str,
    tracking: str,
    before: str | None,
    via: Literal["helper", "direct"],
    progress: _Progress,
) -> GitPullResult:
    env = await _identity_env(service, ref, repo, None)
    message = f"Merge branch '{remote_branch}' of {url}"
    res = await _git(service, ref, repo, "merge", "--no-edit", "-m", message, "--", tracking, env=env)
    after = (await _info(service, ref, repo)).get("head") or None

    def result_of(result: Literal["up-to-date", "fast-forward", "merged", "conflict"], **extra: Any) -> GitPullResult:
        return GitPullResult(
            repo=repo,
            remote=remote,
            branch=local,
            remote_branch=remote_branch,
            via=via,
            before=before,
            after=after,
            result=result,
            **extra,
        )

    if not res.ok:
        conflicted = await _git(service, ref, repo, "diff", "--name-only", "--diff-filter=U")
        files = [f for f in conflicted.stdout.splitlines() if f]
        if files:
            await progress.step(100, "merge conflict")
            return result_of(
                "conflict",
                conflicts=files,
                message="The merge stopped with conflicts: edit the files to resolve them, then git_commit; "
                "or abort with run_command 'git merge --abort'.",
            )
        raise InvalidRequest(
            f"fetched {remote}/{remote_branch} but could not merge it into {local}; commit or discard local "
            f"changes first (git_status shows them).\n{res.text}"
        )
    if before == after:
        result: Literal["up-to-date", "fast-forward", "merged"] = "up-to-date"
    elif "Fast-forward" in res.stdout or before is None:
        result = "fast-forward"
    else:
        result = "merged"
    await progress.step(100, f"{result}: {remote}/{remote_branch} into {local}")
    return result_of(result)
