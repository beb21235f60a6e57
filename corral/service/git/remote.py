"""git_push and git_pull (through the helper when the sandbox has no network)."""

from __future__ import annotations

from typing import Any, Literal

from corral.errors import InvalidRequest
from corral.sandbox_backend.store import SandboxRecord
from corral.service.git.constants import HELPER_WORK, MAX_TRANSFER, OnProgress
from corral.service.git.deps import GitDeps
from corral.service.git.helper import is_missing_branch, missing_branch_error, open_helper
from corral.service.git.models import GitCredentials, GitPullResult, GitPushResult
from corral.service.git.progress import Progress
from corral.service.git.refs import check_branch, check_remote, parse_url
from corral.service.git.repo import current_branch, identity_env, remote_url, repo_info
from corral.service.git.runner import GitRun, failure, run_git, run_git_ok, run_in_sandbox
from corral.service.git.secrets import Auth, auth_from, scrubbed, secrets_of
from corral.service.git.transfer import HELPER_INIT, pack_repo, remove_staged, upload_staged
from corral.service.validation import check_path

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


_AFTER_PUSH_SCRIPT = r"""
cd "$1" || exit 3
git update-ref "refs/remotes/$2/$3" "$4"
if [ -z "$(git config --get "branch.$3.remote")" ]; then
  git config "branch.$3.remote" "$2" && git config "branch.$3.merge" "refs/heads/$3"
fi
"""


async def push(
    deps: GitDeps,
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
    auth = auth_from(credentials, None)
    hidden = secrets_of(auth)
    with scrubbed(hidden):
        progress = Progress(on_progress, hidden)
        rec = await deps.sandboxes.use(ref)
        info = await repo_info(deps, ref, repo, remote=remote, branch=branch or "")
        name = current_branch(info, branch, repo, "push")
        if branch is None:
            info = await repo_info(deps, ref, repo, remote=remote, branch=name)
        if not info.get("branch_head"):
            raise InvalidRequest(f"{repo} has no branch {name!r} with commits to push")
        url, url_auth = parse_url(remote_url(info, remote, repo))
        auth = auth or url_auth
        hidden += secrets_of(url_auth)
        refspec = f"{'+' if force else ''}refs/heads/{name}:refs/heads/{name}"
        if rec.network != "none":
            via: Literal["helper", "direct"] = "direct"
            res = await run_git(
                deps,
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
            data = await pack_repo(deps, ref, repo, progress, 30)
            async with open_helper(deps, rec, [(f"{HELPER_WORK}/repo.git", data)], destination=url) as helper:
                init = await helper.run(["sh", "-c", HELPER_INIT])
                if init.exit_code != 0:
                    raise failure("preparing the push", init)
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
        await run_in_sandbox(deps, ref, ["sh", "-c", _AFTER_PUSH_SCRIPT, "sh", repo, remote, name, head], cwd="/")
        await progress.step(100, f"{outcome}: {name} -> {remote}")
        return GitPushResult(repo=repo, remote=remote, url=url, branch=name, head=head, result=outcome, via=via)  # type: ignore[arg-type]


async def pull(
    deps: GitDeps,
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
    auth = auth_from(credentials, None)
    hidden = secrets_of(auth)
    with scrubbed(hidden):
        progress = Progress(on_progress, hidden)
        rec = await deps.sandboxes.use(ref)
        info = await repo_info(deps, ref, repo, remote=remote)
        local = current_branch(info, None, repo, "pull into")
        info = await repo_info(deps, ref, repo, remote=remote, branch=local)
        upstream = info.get("upstream_merge", "")
        if branch is None and upstream.startswith("refs/heads/") and info.get("upstream_remote") == remote:
            branch = upstream.removeprefix("refs/heads/")
        remote_branch = branch or local
        url, url_auth = parse_url(remote_url(info, remote, repo))
        auth = auth or url_auth
        hidden += secrets_of(url_auth)
        tracking = f"refs/remotes/{remote}/{remote_branch}"
        before = info.get("head") or None
        if rec.network != "none":
            via: Literal["helper", "direct"] = "direct"
            res = await run_git(
                deps,
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
                if is_missing_branch(res.text):
                    raise InvalidRequest(f"branch {remote_branch!r} does not exist in {url}")
                raise failure("git fetch", res, url=url, sent_auth=auth is not None)
        else:
            via = "helper"
            await _fetch_via_helper(deps, ref, rec, repo, url, auth, remote_branch, tracking, progress)
        return await _merge(deps, ref, repo, url, remote, local, remote_branch, tracking, before, via, progress)


_FETCHED = "refs/corral/fetched"


async def _fetch_via_helper(
    deps: GitDeps,
    ref: str,
    rec: SandboxRecord,
    repo: str,
    url: str,
    auth: Auth | None,
    remote_branch: str,
    tracking: str,
    progress: Progress,
) -> None:
    """Fetch `remote_branch` in a helper that holds the sandbox's objects (so only what is new is
    downloaded), then bring just the new objects back as a bundle and update `tracking`."""
    data = await pack_repo(deps, ref, repo, progress, 20)
    bundle = b""
    async with open_helper(deps, rec, [(f"{HELPER_WORK}/repo.git", data)], destination=url) as helper:
        init = await helper.run(["sh", "-c", HELPER_INIT])
        if init.exit_code != 0:
            raise failure("preparing the fetch", init)
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
            if is_missing_branch(out.stderr.decode(errors="replace")):
                raise await missing_branch_error(helper, url, auth, remote_branch)
            raise failure("git fetch", out, url=url, sent_auth=auth is not None)
        known = ["--not", "--branches", "--remotes", "--tags"]
        sha = (await helper.run(["git", "--git-dir=repo.git", "rev-parse", _FETCHED])).stdout.decode().strip()
        new = await helper.run(["git", "--git-dir=repo.git", "rev-list", "-n1", _FETCHED, *known])
        if new.stdout.strip():
            made = await helper.run(
                ["git", "--git-dir=repo.git", "bundle", "create", "-", _FETCHED, *known], max_stdout=MAX_TRANSFER
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
    via: Literal["helper", "direct"],
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
            via=via,
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
