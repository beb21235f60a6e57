"""Running git in the sandbox through the agent's `exec` op: argv only, programs by absolute path,
PATH set to root-owned directories (sandbox code owns /workspace/.local/bin, first on the image's
PATH). These are the sandbox's own repositories: git there reads the sandbox's config and hooks,
which is its business, because no such process has network or credentials."""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from corral.config import WORKDIR
from corral.errors import AgentRefused, CorralError, InvalidRequest
from corral.sandbox_backend.engine import ExecOutput
from corral.service.git.constants import GIT, GIT_ENV, Listener
from corral.service.git.deps import GitDeps


@dataclass(frozen=True)
class GitRun:
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


async def run_in_sandbox(
    deps: GitDeps,
    ref: str,
    argv: Sequence[str],
    *,
    cwd: str = WORKDIR,
    env: dict[str, str] | None = None,
    stdin: bytes | None = None,
    max_output: int | None = None,
    on_stderr: Listener | None = None,
) -> GitRun:
    limit = deps.settings.exec.max_timeout
    params: dict[str, Any] = {
        "argv": list(argv),
        "cwd": cwd,
        "env": {**(env or {}), **GIT_ENV},
        "timeout": limit,
        "max_output": max_output or deps.settings.exec.output_limit * 2,
        "stream": on_stderr is not None,
    }
    if stdin is not None:
        params["stdin_b64"] = base64.b64encode(stdin).decode()

    async def on_event(event: dict[str, Any]) -> None:
        if on_stderr is not None and event.get("event") == "output" and event.get("stream") == "stderr":
            await on_stderr(str(event.get("data", "")).encode())

    try:
        res = await deps.sandboxes.request(ref, "exec", params, timeout=limit + 15, on_event=on_event)
    except AgentRefused as exc:
        if exc.field == "cwd":
            raise InvalidRequest(f"{cwd} does not exist or is not a directory in the sandbox") from None
        if exc.field == "argv" and exc.kind == "not_found":
            raise InvalidRequest(
                f"{argv[0]} is not installed in this sandbox's image (Corral runs it by that path); "
                "use an image with git, e.g. the default one"
            ) from None
        raise
    return GitRun(
        exit_code=code if isinstance(code := res.get("exit_code"), int) and not isinstance(code, bool) else None,
        stdout=str(res.get("stdout", "")),
        stderr=str(res.get("stderr", "")),
        dropped=dropped if isinstance(dropped := res.get("stdout_dropped"), int) else 0,
        timed_out=res.get("timed_out") is True,
    )


async def run_git(deps: GitDeps, ref: str, repo: str, *args: str, **kwargs: Any) -> GitRun:
    return await run_in_sandbox(deps, ref, [GIT, *args], cwd=repo, **kwargs)


async def run_git_ok(deps: GitDeps, ref: str, repo: str, *args: str, **kwargs: Any) -> GitRun:
    res = await run_git(deps, ref, repo, *args, **kwargs)
    if not res.ok:
        raise failure(f"git {args[0]}", res, repo=repo)
    return res


def failure(
    what: str, res: GitRun | ExecOutput, *, url: str | None = None, repo: str | None = None, sent_auth: bool = False
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
    if re.search(r"returned error: 30[12378]\b", low) or "redirect" in low:
        return InvalidRequest(
            f"{target} answered with a redirect, which Corral does not follow (it could lead to a host the "
            "destination check did not approve); use the repository's final URL, e.g. https:// instead of http://"
        )
    if ("repository" in low and "not found" in low) or "error: 404" in low or "does not appear to be a git" in low:
        return InvalidRequest(f"no git repository at {target}: check the URL")
    if "could not resolve host" in low:
        return InvalidRequest(f"cannot resolve the host of {target}: check the URL")
    if any(s in low for s in ("failed to connect", "connection refused", "couldn't connect", "timed out")):
        return InvalidRequest(f"cannot connect to {target}: the server is unreachable from here")
    return InvalidRequest(f"{what} failed (exit {code}):\n{text}")
