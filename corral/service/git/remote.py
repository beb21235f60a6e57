"""git_push and git_pull (through the helper when the sandbox has no network)."""

from __future__ import annotations

import re
from typing import Any, Literal

from corral.errors import InvalidRequest
from corral.sandbox_backend.store import SandboxRecord
from corral.service.git.constants import HELPER_REPO, MAX_TRANSFER, OnProgress
from corral.service.git.deps import GitDeps
from corral.service.git.helper import is_missing_branch, missing_branch_error, open_helper
from corral.service.git.models import GitCredentials, GitPullResult, GitPushResult
from corral.service.git.progress import Progress
from corral.service.git.refs import check_branch, check_remote, parse_url
from corral.service.git.repo import current_branch, identity_env, remote_url, repo_info
from corral.service.git.runner import GitRun, failure, run_git, run_git_ok
from corral.service.git.secrets import Auth, auth_from, scrubbed, secrets_of
from corral.service.git.transfer import bundle_repo, remove_staged, upload_staged
from corral.service.git.trust import check_credentials_target, repo_key
from corral.service.validation import check_path

_OID_RE = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
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
    raise failure("git push", GitRun(code, out_text, err_text, 0, False), url=url, sent_auth=sent_auth)


async def _track_pushed(deps: GitDeps, ref: str, repo: str, remote: str, name: str, head: str, upstream: str) -> None:
    """Record what the remote now has (refs/remotes/<remote>/<name>) and track it unless the branch
    already has an upstream, as `git push -u` would."""
    await run_git(deps, ref, repo, "update-ref", f"refs/remotes/{remote}/{name}", head)
    if not upstream:
        await run_git(deps, ref, repo, "config", f"branch.{name}.remote", remote)
        await run_git(deps, ref, repo, "config", f"branch.{name}.merge", f"refs/heads/{name}")


async def push(
    deps: GitDeps,
    ref: str,
    repo: str,
    *,
    remote: str = "origin",
    branch: str | None = None,
    credentials: GitCredentials | None = None,
    host: str | None = None,
    force: bool = False,
    on_progress: OnProgress | None = None,
) -> GitPushResult:
    repo = repo_key(check_path(repo))
    check_remote(remote)
    if branch is not None:
        check_branch(branch)
    auth = auth_from(credentials, None)
    _check_host_use(host, auth)
    hidden = secrets_of(auth)
    with scrubbed(hidden):
        progress = Progress(on_progress, hidden)
        rec = await deps.sandboxes.use(ref)
        info = await repo_info(deps, ref, repo, remote=remote, branch=branch or "")
        name = current_branch(info, branch, repo, "push")
        if branch is None:
            info = await repo_info(deps, ref, repo, remote=remote, branch=name)
        head = info.get("branch_head", "")
        if not _OID_RE.match(head):
            raise InvalidRequest(f"{repo} has no branch {name!r} with commits to push")
        url, url_auth = parse_url(remote_url(info, remote, repo))
        if auth is not None:
            await check_credentials_target(deps, rec.id, repo, remote, url, host)
        auth = auth or url_auth  # credentials in the sandbox's own remote URL are the sandbox's to use
        hidden += secrets_of(url_auth)
        refspec = f"{'+' if force else ''}refs/heads/{name}:refs/heads/{name}"
        data = await bundle_repo(deps, ref, repo, [f"refs/heads/{name}"], info.get("common_dir", ""), progress, 30)
        async with open_helper(deps, rec, destination=url) as helper:
            await helper.import_bundle(data.bundle, data.shallow, [f"+refs/heads/{name}:refs/heads/{name}"])
            out = await helper.git(
                f"--git-dir={HELPER_REPO}", "push", "--progress", "--porcelain", "--", url, refspec,
                auth=auth, network=True, on_stderr=progress.git(32, 95),
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
        await _track_pushed(deps, ref, repo, remote, name, head, info.get("upstream_remote", ""))
        await progress.step(100, f"{outcome}: {name} -> {remote}")
        return GitPushResult(repo=repo, remote=remote, url=url, branch=name, head=head, result=outcome)  # type: ignore[arg-type]


async def pull(
    deps: GitDeps,
    ref: str,
    repo: str,
    *,
    remote: str = "origin",
    branch: str | None = None,
    credentials: GitCredentials | None = None,
    host: str | None = None,
    on_progress: OnProgress | None = None,
) -> GitPullResult:
    repo = repo_key(check_path(repo))
    check_remote(remote)
    if branch is not None:
        check_branch(branch, "remote branch")
    auth = auth_from(credentials, None)
    _check_host_use(host, auth)
    hidden = secrets_of(auth)
    with scrubbed(hidden):
        progress = Progress(on_progress, hidden)
        rec = await deps.sandboxes.use(ref)
        info = await repo_info(deps, ref, repo, remote=remote)
        local = current_branch(info, None, repo, "pull into")
        info = await repo_info(deps, ref, repo, remote=remote, branch=local)
        upstream = info.get("upstream_merge", "")
        if branch is None and upstream.startswith("refs/heads/") and info.get("upstream_remote") == remote:
            branch = check_branch(upstream.removeprefix("refs/heads/"), "upstream branch")
        remote_branch = branch or local
        url, url_auth = parse_url(remote_url(info, remote, repo))
        if auth is not None:
            await check_credentials_target(deps, rec.id, repo, remote, url, host)
        auth = auth or url_auth
        hidden += secrets_of(url_auth)
        tracking = f"refs/remotes/{remote}/{remote_branch}"
        before = info.get("head") or None
        await _fetch_via_helper(deps, ref, rec, repo, info, url, auth, remote_branch, tracking, progress)
        return await _merge(deps, ref, repo, url, remote, local, remote_branch, tracking, before, progress)


def _check_host_use(host: str | None, auth: Auth | None) -> None:
    if host is not None and auth is None:
        raise InvalidRequest("host names where credentials go: pass it together with credentials, or leave it out")


_FETCHED = "refs/corral/fetched"


async def _fetch_via_helper(
    deps: GitDeps,
    ref: str,
    rec: SandboxRecord,
    repo: str,
    info: dict[str, str],
    url: str,
    auth: Auth | None,
    remote_branch: str,
    tracking: str,
    progress: Progress,
) -> None:
    """Fetch `remote_branch` in a helper that holds the sandbox's commits (so only what is new is
    downloaded), then bring just the new objects back as a bundle and update `tracking`."""
    data = await bundle_repo(deps, ref, repo, ["--branches", "--remotes"], info.get("common_dir", ""), progress, 20)
    bundle = b""
    async with open_helper(deps, rec, destination=url) as helper:
        await helper.import_bundle(
            data.bundle, data.shallow, ["+refs/heads/*:refs/heads/*", "+refs/remotes/*:refs/remotes/*"]
        )
        out = await helper.git(
            f"--git-dir={HELPER_REPO}", "fetch", "--progress", "--no-tags", "--", url,
            f"+refs/heads/{remote_branch}:{_FETCHED}", auth=auth, network=True, on_stderr=progress.git(22, 75),
        )
        if out.exit_code != 0:
            if is_missing_branch(out.stderr.decode(errors="replace")):
                raise await missing_branch_error(helper, url, auth, remote_branch)
            raise failure("git fetch", out, url=url, sent_auth=auth is not None)
        known = ["--not", "--branches", "--remotes", "--tags"]
        sha = (await helper.git(f"--git-dir={HELPER_REPO}", "rev-parse", _FETCHED)).stdout.decode().strip()
        new = await helper.git(f"--git-dir={HELPER_REPO}", "rev-list", "-n1", _FETCHED, *known)
        if new.stdout.strip():
            made = await helper.git(
                f"--git-dir={HELPER_REPO}", "bundle", "create", "-q", "-", _FETCHED, *known, max_stdout=MAX_TRANSFER
            )
            if made.exit_code != 0:
                raise failure("bundling the fetched commits", made)
            bundle = made.stdout
    if bundle:
        staged = await upload_staged(deps, ref, bundle, progress, (76, 90), ".bundle")
        try:
            res = await run_git(deps, ref, repo, "fetch", "-q", "--no-tags", staged, f"+{_FETCHED}:{tracking}")
        finally:
            await remove_staged(deps, ref, staged)
        if not res.ok:
            raise failure("unbundling the fetched commits", res, repo=repo)
    else:
        await run_git_ok(deps, ref, repo, "update-ref", tracking, sha)


async def _merge(
    deps: GitDeps,
    ref: str,
    repo: str,
    url: str,
    remote: str,
    local: str,
    remote_branch: str,
    tracking: str,
    before: str | None,
    progress: Progress,
) -> GitPullResult:
    env = await identity_env(deps, ref, repo, None)
    message = f"Merge branch '{remote_branch}' of {url}"
    res = await run_git(deps, ref, repo, "merge", "--no-edit", "-m", message, "--", tracking, env=env)
    after = (await repo_info(deps, ref, repo)).get("head") or None

    def result_of(result: Literal["up-to-date", "fast-forward", "merged", "conflict"], **extra: Any) -> GitPullResult:
        return GitPullResult(
            repo=repo,
            remote=remote,
            branch=local,
            remote_branch=remote_branch,
            before=before,
            after=after,
            result=result,
            **extra,
        )

    if not res.ok:
        conflicted = await run_git(deps, ref, repo, "diff", "--name-only", "--diff-filter=U")
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
