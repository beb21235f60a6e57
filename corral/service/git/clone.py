"""git_clone: the helper clones, the sandbox gets the result as a tar its own /bin/tar unpacks."""

from __future__ import annotations

from corral.config import MIB, WORKDIR
from corral.errors import AgentRefused, InvalidRequest
from corral.service.git.constants import HELPER_WORK, MAX_TRANSFER, TAR, OnProgress
from corral.service.git.deps import GitDeps
from corral.service.git.helper import is_missing_branch, missing_branch_error, open_helper
from corral.service.git.models import GitCloneResult, GitCredentials
from corral.service.git.progress import Progress
from corral.service.git.refs import check_branch, check_depth, parse_url, repo_name
from corral.service.git.repo import repo_info
from corral.service.git.runner import failure, run_git, run_in_sandbox
from corral.service.git.secrets import auth_from, scrubbed, secrets_of
from corral.service.git.transfer import remove_staged, upload_staged
from corral.service.git.trust import remember_clone, repo_key
from corral.service.validation import check_path


async def _check_destination_free(deps: GitDeps, ref: str, dest: str) -> None:
    taken = InvalidRequest(f"{dest} already exists and is not an empty directory; choose another path")
    stat = await deps.sandboxes.request(ref, "stat", {"path": dest}, timeout=30)
    if not stat.get("exists"):
        return
    if stat.get("type") != "dir":
        raise taken
    try:
        listing = await deps.sandboxes.request(ref, "list_files", {"path": dest, "max_entries": 1}, timeout=30)
    except AgentRefused:
        raise taken from None
    if listing.get("entries"):
        raise taken


async def clone(
    deps: GitDeps,
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
    auth = auth_from(credentials, url_auth)
    hidden = secrets_of(auth, url_auth)
    with scrubbed(hidden):
        dest = repo_key(check_path(path or f"{WORKDIR}/{repo_name(clean_url)}"))
        if branch is not None:
            check_branch(branch)
        check_depth(depth)
        progress = Progress(on_progress, hidden)
        rec = await deps.sandboxes.use(ref)
        await _check_destination_free(deps, ref, dest)
        options = ["--progress", *(["--branch", branch] if branch else []), *(["--depth", str(depth)] if depth else [])]
        async with open_helper(deps, rec, destination=clean_url) as helper:
            await progress.step(1, "started a networked helper")
            out = await helper.git(
                "clone", *options, "--", clean_url, f"{HELPER_WORK}/repo", auth=auth, network=True,
                on_stderr=progress.git(2, 60),
            )
            if out.exit_code != 0:
                if branch and is_missing_branch(out.stderr.decode(errors="replace")):
                    raise await missing_branch_error(helper, clean_url, auth, branch)
                raise failure("git clone", out, url=clean_url, sent_auth=auth is not None)
            packed = await helper.run([TAR, "-c", "-C", f"{HELPER_WORK}/repo", "."], max_stdout=MAX_TRANSFER)
            if packed.exit_code != 0:
                raise failure("packing the clone", packed)
        await progress.step(62, f"cloned; copying {len(packed.stdout) / MIB:.1f} MiB into the sandbox")
        staged = await upload_staged(deps, ref, packed.stdout, progress, (62, 95), ".tar")
        try:
            await deps.sandboxes.request(ref, "fs_mkdir", {"path": dest}, timeout=30)
            res = await run_in_sandbox(deps, ref, [TAR, "-x", "-f", staged, "-C", dest], cwd="/")
        finally:
            await remove_staged(deps, ref, staged)
        if not res.ok:
            raise failure("unpacking the clone", res)
        await remember_clone(deps, rec.id, dest, clean_url)
        # The index holds the helper's file stat data: refresh it so status is accurate and fast.
        await run_git(deps, ref, dest, "update-index", "-q", "--refresh")
        info = await repo_info(deps, ref, dest, count=True)
        await progress.step(100, f"cloned into {dest}")
        count = info.get("count", "")
        return GitCloneResult(
            path=dest,
            url=clean_url,
            branch=info.get("branch") or None,
            head=info.get("head") or None,
            commits=int(count) if count.isascii() and count.isdigit() else 0,
            shallow=info.get("shallow") == "true",
            via="helper",
        )
