"""Facts about a repository in the sandbox (branch, head, remote, identity)."""

from __future__ import annotations

from corral.errors import InvalidRequest
from corral.service.git.constants import DEFAULT_AUTHOR, SH
from corral.service.git.deps import GitDeps
from corral.service.git.refs import check_branch
from corral.service.git.runner import failure, run_git, run_in_sandbox

# One /bin/sh run reads what several git calls would: the repository's path and tool arguments are
# positional parameters (never parsed as shell), every program is called by absolute path. What it
# prints is the sandbox's word and is checked before use.
_INFO_SCRIPT = r"""
cd "$1" || exit 3
G=/usr/bin/git
$G rev-parse --git-dir >/dev/null || exit 4
echo "branch=$($G symbolic-ref -q --short HEAD)"
echo "head=$($G rev-parse -q --verify HEAD)"
echo "shallow=$($G rev-parse --is-shallow-repository)"
echo "common_dir=$($G rev-parse --path-format=absolute --git-common-dir)"
if [ -n "$2" ]; then echo "count=$($G rev-list --count HEAD 2>/dev/null)"; fi
if [ -n "$3" ]; then
  echo "url=$($G config --get "remote.$3.url")"
  echo "remotes=$($G remote | /usr/bin/tr '\n' ' ')"
fi
if [ -n "$4" ]; then
  echo "upstream_remote=$($G config --get "branch.$4.remote")"
  echo "upstream_merge=$($G config --get "branch.$4.merge")"
  echo "branch_head=$($G rev-parse -q --verify "refs/heads/$4")"
fi
"""


async def repo_info(
    deps: GitDeps, ref: str, repo: str, *, count: bool = False, remote: str = "", branch: str = ""
) -> dict[str, str]:
    res = await run_in_sandbox(
        deps, ref, [SH, "-c", _INFO_SCRIPT, "sh", repo, "1" if count else "", remote, branch], cwd="/"
    )
    if res.exit_code == 3:
        raise InvalidRequest(f"{repo} does not exist or is not a directory in the sandbox")
    if res.exit_code == 4:
        raise failure("git", res, repo=repo)
    if not res.ok:
        raise failure("reading the repository", res, repo=repo)
    return dict(line.split("=", 1) for line in res.stdout.splitlines() if "=" in line)


def current_branch(info: dict[str, str], branch: str | None, repo: str, op: str) -> str:
    if branch:
        return check_branch(branch)
    if not info.get("branch"):
        raise InvalidRequest(f"HEAD of {repo} is detached: switch to a branch (git_checkout) or name one to {op}")
    return check_branch(info["branch"], "current branch")  # the sandbox's word: checked like the model's


def remote_url(info: dict[str, str], remote: str, repo: str) -> str:
    url = info.get("url", "")
    if not url:
        known = info.get("remotes", "").split() or ["none"]
        raise InvalidRequest(f"{repo} has no remote named {remote!r}; its remotes: {', '.join(known)}")
    return url


async def identity_env(deps: GitDeps, ref: str, repo: str, author: tuple[str, str] | None) -> dict[str, str]:
    """Fill in a name and email only where the repository's config has none, so commits never fail
    for want of an identity and a configured one always wins."""
    res = await run_git(deps, ref, repo, "config", "--get-regexp", r"^user\.(name|email)$")
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
