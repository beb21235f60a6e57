"""Local git operations: status, diff, log, checkout, commit."""

from __future__ import annotations

import re
from collections.abc import Sequence

from corral.config import MIB
from corral.errors import InvalidRequest
from corral.service.git.constants import MAX_STATUS_FILES
from corral.service.git.deps import GitDeps
from corral.service.git.models import (
    GitCheckoutResult,
    GitCommitInfo,
    GitCommitResult,
    GitDiff,
    GitFileChange,
    GitLog,
    GitStatus,
)
from corral.service.git.refs import check_author, check_branch, check_repo_paths, check_rev
from corral.service.git.repo import identity_env, repo_info
from corral.service.git.runner import failure, run_git, run_git_ok
from corral.service.validation import check_path

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


async def status(deps: GitDeps, ref: str, repo: str) -> GitStatus:
    repo = check_path(repo)
    res = await run_git_ok(
        deps,
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
    deps: GitDeps,
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
    res = await run_git_ok(deps, ref, repo, *args, "--", *check_repo_paths(paths))
    return GitDiff(repo=repo, diff=res.stdout, truncated=res.dropped > 0)


async def log(
    deps: GitDeps,
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
    res = await run_git(deps, ref, repo, *args, "--", *check_repo_paths(paths), max_output=1 * MIB)
    if not res.ok:
        if "does not have any commits yet" in res.text:
            return GitLog(repo=repo, commits=[])
        if "unknown revision" in res.text or "bad revision" in res.text:
            raise InvalidRequest(f"unknown revision {rev!r} in {repo}: give an existing branch, tag or commit")
        raise failure("git log", res, repo=repo)
    commits = []
    for record in res.stdout.split("\x1e"):
        parts = record.strip("\n").split("\x1f")
        if len(parts) == 5:
            commits.append(
                GitCommitInfo(sha=parts[0], author=parts[1], email=parts[2], date=parts[3], subject=parts[4])
            )
    return GitLog(repo=repo, commits=commits)


async def checkout(
    deps: GitDeps, ref: str, repo: str, branch: str, *, create: bool = False, start_point: str | None = None
) -> GitCheckoutResult:
    repo = check_path(repo)
    check_branch(branch)
    if start_point is not None and not create:
        raise InvalidRequest("start_point only applies when creating a branch (create=true)")
    args = ["switch", "-c", branch] if create else ["switch", branch]
    if start_point is not None:
        args.append(check_rev(start_point))
    res = await run_git(deps, ref, repo, *args)
    if not res.ok:
        low = res.text.lower()
        if "already exists" in low:
            raise InvalidRequest(f"branch {branch!r} already exists in {repo}; switch to it with create=false")
        if "invalid reference" in low:
            target = start_point if create else branch
            listing = await run_git(deps, ref, repo, "branch", "-a", "--format=%(refname:short)")
            names = ", ".join(listing.stdout.split()[:50]) or "none"
            hint = "" if create else "; pass create=true to make a new branch"
            raise InvalidRequest(f"no branch or commit {target!r} in {repo}{hint}. Branches: {names}")
        if "would be overwritten" in low:
            raise InvalidRequest(
                f"cannot switch to {branch!r}: uncommitted changes in {repo} would be overwritten; "
                f"commit them (git_commit) or discard them first.\n{res.text}"
            )
        raise failure("git switch", res, repo=repo)
    info = await repo_info(deps, ref, repo)
    return GitCheckoutResult(repo=repo, branch=branch, created=create, head=info.get("head") or None)


async def commit(
    deps: GitDeps,
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
        await run_git_ok(deps, ref, repo, "add", "-A")
    elif paths:
        await run_git_ok(deps, ref, repo, "add", "-A", "--", *check_repo_paths(paths))
    env = await identity_env(deps, ref, repo, identity)
    args = ["commit", "-q", "-F", "-"]
    if identity is not None:
        args.append(f"--author={identity[0]} <{identity[1]}>")
    res = await run_git(deps, ref, repo, *args, env=env, stdin=message.encode())
    if not res.ok:
        if "nothing to commit" in res.stdout + res.stderr or "no changes added" in res.stdout + res.stderr:
            what = "no staged changes" if paths == [] else "nothing changed"
            raise InvalidRequest(f"nothing to commit in {repo}: {what} (git_status shows the state)")
        raise failure("git commit", res, repo=repo)
    stat = await run_git_ok(deps, ref, repo, "show", "--no-color", "--shortstat", "--format=%H", "HEAD")
    lines = [line.strip() for line in stat.stdout.splitlines() if line.strip()]
    info = await repo_info(deps, ref, repo)
    return GitCommitResult(
        repo=repo, sha=lines[0], branch=info.get("branch") or None, summary=lines[1] if len(lines) > 1 else ""
    )
