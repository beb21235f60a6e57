"""Git tools: clone, pull and push (fetched for the sandbox when it has no network) and local work."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import Context
from pydantic import Field

from corral.service.git import OnProgress
from corral.service.git.models import (
    GitCheckoutResult,
    GitCloneResult,
    GitCommitResult,
    GitCredentials,
    GitDiff,
    GitLog,
    GitPullResult,
    GitPushResult,
    GitStatus,
)
from corral.tools._base import SandboxRef, ToolSpec, services

RepoArg = Annotated[
    str, Field(description="Repository directory in the sandbox, e.g. /workspace/project (relative: under /workspace).")
]
Credentials = Annotated[
    GitCredentials | None,
    Field(description="For private repositories: used for this call only, never stored or shown."),
]
RemoteArg = Annotated[str, Field(description="Remote name.")]
PathsArg = Annotated[list[str] | None, Field(description="Limit to these files or directories (relative to repo).")]


def _progress(ctx: Context) -> OnProgress:
    async def report(progress: float, total: float | None, message: str) -> None:
        await ctx.report_progress(progress, total, message)

    return report


async def git_clone(
    ctx: Context,
    sandbox: SandboxRef,
    url: Annotated[str, Field(description="https:// URL of the repository.")],
    path: Annotated[str | None, Field(description="Target directory (default /workspace/<repo name>).")] = None,
    branch: Annotated[str | None, Field(description="Branch to check out (default: the remote's).")] = None,
    depth: Annotated[int | None, Field(description="Fetch only this many recent commits.")] = None,
    credentials: Credentials = None,
) -> GitCloneResult:
    """Clone a git repository into the sandbox, which needs no network for it. Reports progress."""
    return await services(ctx).git.clone(sandbox,
        url,
        path=path,
        branch=branch,
        depth=depth,
        credentials=credentials,
        on_progress=_progress(ctx),
    )


async def git_status(ctx: Context, sandbox: SandboxRef, repo: RepoArg) -> GitStatus:
    """Show the current branch, ahead/behind counts and changed, staged and untracked files."""
    return await services(ctx).git.status(sandbox, repo)


async def git_diff(
    ctx: Context,
    sandbox: SandboxRef,
    repo: RepoArg,
    paths: PathsArg = None,
    staged: Annotated[bool, Field(description="Diff what is staged for commit instead of unstaged changes.")] = False,
    base: Annotated[str | None, Field(description="Compare against this commit or branch, e.g. 'HEAD~1'.")] = None,
) -> GitDiff:
    """Show changes as a unified diff (untracked files are not included; git_status lists them)."""
    return await services(ctx).git.diff(sandbox, repo, paths=paths, staged=staged, base=base)


async def git_log(
    ctx: Context,
    sandbox: SandboxRef,
    repo: RepoArg,
    max_count: Annotated[int, Field(description="How many commits, newest first.")] = 20,
    rev: Annotated[str | None, Field(description="Branch, tag, commit or range (default HEAD).")] = None,
    paths: PathsArg = None,
) -> GitLog:
    """List commits: id, author, date and subject."""
    return await services(ctx).git.log(sandbox, repo, max_count=max_count, rev=rev, paths=paths)


async def git_checkout(
    ctx: Context,
    sandbox: SandboxRef,
    repo: RepoArg,
    branch: Annotated[str, Field(description="Branch to switch to (a remote branch is tracked automatically).")],
    create: Annotated[bool, Field(description="Create the branch first.")] = False,
    start_point: Annotated[str | None, Field(description="With create: where it starts (default HEAD).")] = None,
) -> GitCheckoutResult:
    """Switch to a branch, or create one and switch to it."""
    return await services(ctx).git.checkout(sandbox, repo, branch, create=create, start_point=start_point)


async def git_commit(
    ctx: Context,
    sandbox: SandboxRef,
    repo: RepoArg,
    message: Annotated[str, Field(description="Commit message.")],
    author: Annotated[str | None, Field(description="'Name <email>' (default: the repository's user).")] = None,
    paths: Annotated[
        list[str] | None,
        Field(description="Files to stage first; default all changes incl. untracked; [] = only what is staged."),
    ] = None,
) -> GitCommitResult:
    """Stage changes and commit them."""
    return await services(ctx).git.commit(sandbox, repo, message, author=author, paths=paths)


async def git_push(
    ctx: Context,
    sandbox: SandboxRef,
    repo: RepoArg,
    remote: RemoteArg = "origin",
    branch: Annotated[str | None, Field(description="Branch to push (default: the current one).")] = None,
    credentials: Credentials = None,
    force: Annotated[bool, Field(description="Overwrite the remote branch even if it has other commits.")] = False,
) -> GitPushResult:
    """Push a branch to the same-named branch of a remote, and track it. Reports progress."""
    return await services(ctx).git.push(sandbox,
        repo,
        remote=remote,
        branch=branch,
        credentials=credentials,
        force=force,
        on_progress=_progress(ctx),
    )


async def git_pull(
    ctx: Context,
    sandbox: SandboxRef,
    repo: RepoArg,
    remote: RemoteArg = "origin",
    branch: Annotated[str | None, Field(description="Remote branch (default: the upstream, else same name).")] = None,
    credentials: Credentials = None,
) -> GitPullResult:
    """Fetch a remote branch and merge it into the current branch; conflicts are listed, not fatal."""
    return await services(ctx).git.pull(sandbox,
        repo,
        remote=remote,
        branch=branch,
        credentials=credentials,
        on_progress=_progress(ctx),
    )


TOOLS: list[ToolSpec] = [
    ToolSpec(git_clone, "Clone git repository", open_world=True, executes=True),
    ToolSpec(git_status, "Git status", read_only=True, idempotent=True),
    ToolSpec(git_diff, "Git diff", read_only=True, idempotent=True),
    ToolSpec(git_log, "Git log", read_only=True, idempotent=True),
    ToolSpec(git_checkout, "Git switch branch", idempotent=True),
    ToolSpec(git_commit, "Git commit"),
    ToolSpec(git_push, "Git push", destructive=True, open_world=True, executes=True),
    ToolSpec(git_pull, "Git pull", open_world=True, executes=True),
]
