"""Where credentials may go: only to a host a tool call named, never to one read from the sandbox.

A sandbox's git config is the sandbox's to rewrite (`git remote set-url origin http://elsewhere`),
so the remote URL it reports is only a claim. Credentials given to git_push / git_pull go to the
call's `host` if it names one (remembered for the repository from then on), else to the host
git_clone was given for that repository; both are kept in SQLite (`git_remotes`), keyed by the
repository path the model names. When the remote's host differs, nothing is sent.
"""

from __future__ import annotations

import posixpath

from corral.errors import InvalidRequest
from corral.service.git.deps import GitDeps
from corral.service.git.refs import origin_of, parse_host


def repo_key(repo: str) -> str:
    """The repository path as the model names it, normalized ('p', '/workspace/p/' and
    '/workspace/./p' are one key)."""
    return posixpath.normpath(repo)


async def remember_clone(deps: GitDeps, sandbox_id: str, repo: str, url: str) -> None:
    await deps.remotes.remember(sandbox_id, repo_key(repo), "origin", origin_of(url))


async def check_credentials_target(
    deps: GitDeps, sandbox_id: str, repo: str, remote: str, url: str, host: str | None
) -> None:
    """Raise unless credentials for this call may go to `url` (the remote's URL, as the sandbox
    reports it): its origin must be the one the call or an earlier call named."""
    actual = origin_of(url)
    named: str | None
    if host is not None:
        named = parse_host(host)
        source = "the host this call named"
    else:
        named = await deps.remotes.origin(sandbox_id, repo_key(repo), remote)
        source = f"the host {repo} was cloned from (or last named with `host`)"
        if named is None:
            raise InvalidRequest(
                f"no call has named where credentials for {repo} (remote {remote!r}) may go; its remote points to "
                f"{actual}. If that is the right server, pass host={_short(actual)!r} with the credentials."
            )
    if named != actual:
        raise InvalidRequest(
            f"refusing to send credentials to {actual}: remote {remote!r} of {repo} points there, but they are "
            f"for {named} ({source}). Point the remote back (git remote set-url), or pass host= to name the "
            "server the credentials are for."
        )
    if host is not None:
        await deps.remotes.remember(sandbox_id, repo_key(repo), remote, named)


def _short(origin: str) -> str:
    if origin.startswith("https://") and origin.endswith(":443"):
        return origin[len("https://") : -len(":443")]
    return origin
