"""git_branches: list, create and delete branches of a repository in the sandbox (argv only)."""

from __future__ import annotations

from typing import Literal

from corral.errors import InvalidRequest
from corral.service.git.deps import GitDeps
from corral.service.git.models import GitBranch, GitBranches
from corral.service.git.refs import check_branch, check_rev
from corral.service.git.runner import failure, run_git, run_git_ok
from corral.service.validation import check_path

MAX_BRANCHES = 1000
_SEP = "\x1f"
_FORMAT = _SEP.join(("%(refname)", "%(objectname:short)", "%(upstream:short)", "%(HEAD)", "%(subject)"))


def parse_branches(text: str, limit: int = MAX_BRANCHES) -> tuple[list[GitBranch], bool]:
    """`git for-each-ref --format=_FORMAT refs/heads refs/remotes` output as branches."""
    branches: list[GitBranch] = []
    for line in text.splitlines():
        parts = line.split(_SEP)
        if len(parts) != 5 or parts[0].endswith("/HEAD"):
            continue
        refname, head, upstream, current, subject = parts
        for prefix, remote in (("refs/heads/", False), ("refs/remotes/", True)):
            if refname.startswith(prefix):
                branches.append(
                    GitBranch(
                        name=refname[len(prefix) :],
                        remote=remote,
                        current=current == "*",
                        head=head,
                        upstream=upstream or None,
                        subject=subject[:200],
                    )
                )
    return branches[:limit], len(branches) > limit


async def branches(
    deps: GitDeps,
    ref: str,
    repo: str,
    *,
    action: Literal["list", "create", "delete"] = "list",
    name: str | None = None,
    start_point: str | None = None,
    force: bool = False,
) -> GitBranches:
    repo = check_path(repo)
    if action not in ("list", "create", "delete"):
        raise InvalidRequest(f"action must be 'list', 'create' or 'delete' (got {action!r})")
    if action == "list":
        if name is not None or start_point is not None:
            raise InvalidRequest("name and start_point are for action='create' or 'delete'")
    elif name is None:
        raise InvalidRequest(f"action='{action}' needs the branch name")
    if start_point is not None and action != "create":
        raise InvalidRequest("start_point only applies to action='create'")
    if action == "create":
        assert name is not None
        args = ["branch", *(["--force"] if force else []), "--", check_branch(name)]
        if start_point is not None:
            args.append(check_rev(start_point))
        await _change(deps, ref, repo, name, args)
    elif action == "delete":
        assert name is not None
        await _change(deps, ref, repo, name, ["branch", "-D" if force else "-d", "--", check_branch(name)])
    listing_args = ("for-each-ref", f"--format={_FORMAT}", "refs/heads", "refs/remotes")
    listing = await run_git_ok(deps, ref, repo, *listing_args, env={"GIT_OPTIONAL_LOCKS": "0"})
    found, truncated = parse_branches(listing.stdout)
    current = next((b.name for b in found if b.current), None)
    changed = None if action == "list" else name
    return GitBranches(repo=repo, current=current, branches=found, truncated=truncated, action=action, branch=changed)


async def _change(deps: GitDeps, ref: str, repo: str, name: str, args: list[str]) -> None:
    res = await run_git(deps, ref, repo, *args)
    if res.ok:
        return
    low = res.text.lower()
    if "already exists" in low:
        raise InvalidRequest(f"branch {name!r} already exists in {repo} (force=true moves it to start_point)")
    if "not found" in low and "branch" in low:
        raise InvalidRequest(f"no branch {name!r} in {repo}; action='list' shows the branches")
    if "not fully merged" in low:
        raise InvalidRequest(f"branch {name!r} is not fully merged; force=true deletes it anyway (losing its commits)")
    if "checked out" in low or "cannot delete branch" in low:
        raise InvalidRequest(f"branch {name!r} is checked out; switch to another branch first (git_checkout)")
    if "not a valid" in low or "invalid reference" in low or "not a commit" in low:
        raise InvalidRequest(f"no commit or branch to start {name!r} from in {repo}: {res.text[:500]}")
    raise failure(f"git {args[0]}", res, repo=repo)
