"""Git tools: clone, pull and push (fetched for the sandbox when it has no network) and local work."""

from __future__ import annotations

from typing import Annotated, Literal

from mcp.server.mcpserver import Context
from pydantic import Field

from corral.service.git import OnProgress
from corral.service.git.models import (
    GitBranches,
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

RepoArg = Annotated[str, Field(description="Repository directory.")]
Credentials = Annotated[GitCredentials | None, Field(description="For private repositories; never stored.")]
RemoteArg = str
PathsArg = Annotated[list[str] | None, Field(description="Only these paths.")]
HostArg = Annotated[str | None, Field(description="Host the credentials are for (default: the one cloned from).")]


def _progress(ctx: Context) -> OnProgress:
    async def report(progress: float, total: float | None, message: str) -> None:
        await ctx.report_progress(progress, total, message)

    return report


async def git_clone(
    ctx: Context,
    sandbox: SandboxRef,
    url: Annotated[str, Field(description="https:// URL.")],
    path: Annotated[str | None, Field(description="Default /workspace/<repo name>.")] = None,
    branch: str | None = None,
    depth: Annotated[int | None, Field(description="Only this many recent commits.")] = None,
    credentials: Credentials = None,
) -> GitCloneResult:
    """Clone a git repository into the sandbox (which needs no network for it)."""
    return await services(ctx).git.clone(sandbox,
        url,
        path=path,
        branch=branch,
        depth=depth,
        credentials=credentials,
        on_progress=_progress(ctx),
    )


async def git_status(ctx: Context, sandbox: SandboxRef, repo: RepoArg) -> GitStatus:
    """Show the branch, ahead/behind counts and changed, staged and untracked files."""
    return await services(ctx).git.status(sandbox, repo)


async def git_diff(
    ctx: Context,
    sandbox: SandboxRef,
    repo: RepoArg,
    paths: PathsArg = None,
    staged: Annotated[bool, Field(description="What is staged, not unstaged changes.")] = False,
    base: Annotated[str | None, Field(description="Compare with this commit, e.g. 'HEAD~1'.")] = None,
) -> GitDiff:
    """Show changes as a unified diff (not untracked files)."""
    return await services(ctx).git.diff(sandbox, repo, paths=paths, staged=staged, base=base)


async def git_log(
    ctx: Context,
    sandbox: SandboxRef,
    repo: RepoArg,
    max_count: int = 20,
    rev: Annotated[str | None, Field(description="Branch, tag, commit or range (default HEAD).")] = None,
    paths: PathsArg = None,
) -> GitLog:
    """List commits, newest first."""
    return await services(ctx).git.log(sandbox, repo, max_count=max_count, rev=rev, paths=paths)


async def git_checkout(
    ctx: Context,
    sandbox: SandboxRef,
    repo: RepoArg,
    branch: str,
    create: bool = False,
    start_point: Annotated[str | None, Field(description="With create (default HEAD).")] = None,
) -> GitCheckoutResult:
    """Switch to a branch (a remote one is tracked), or create one and switch to it."""
    return await services(ctx).git.checkout(sandbox, repo, branch, create=create, start_point=start_point)


async def git_branches(
    ctx: Context,
    sandbox: SandboxRef,
    repo: RepoArg,
    action: Literal["list", "create", "delete"] = "list",
    name: str | None = None,
    start_point: Annotated[str | None, Field(description="For create (default HEAD).")] = None,
    force: Annotated[bool, Field(description="Move an existing branch; delete an unmerged one.")] = False,
) -> GitBranches:
    """List branches, or create or delete one (git_checkout switches)."""
    return await services(ctx).git.branches(
        sandbox, repo, action=action, name=name, start_point=start_point, force=force
    )


async def git_commit(
    ctx: Context,
    sandbox: SandboxRef,
    repo: RepoArg,
    message: str,
    author: Annotated[str | None, Field(description="'Name <email>'.")] = None,
    paths: Annotated[list[str] | None, Field(description="To stage; default all; [] = only what is staged.")] = None,
) -> GitCommitResult:
    """Stage changes and commit them."""
    return await services(ctx).git.commit(sandbox, repo, message, author=author, paths=paths)


async def git_push(
    ctx: Context,
    sandbox: SandboxRef,
    repo: RepoArg,
    remote: RemoteArg = "origin",
    branch: Annotated[str | None, Field(description="Default: the current one.")] = None,
    credentials: Credentials = None,
    host: HostArg = None,
    force: bool = False,
) -> GitPushResult:
    """Push a branch to the same-named branch of a remote, and track it."""
    return await services(ctx).git.push(sandbox,
        repo,
        remote=remote,
        branch=branch,
        credentials=credentials,
        host=host,
        force=force,
        on_progress=_progress(ctx),
    )


async def git_pull(
    ctx: Context,
    sandbox: SandboxRef,
    repo: RepoArg,
    remote: RemoteArg = "origin",
    branch: Annotated[str | None, Field(description="Default: the upstream.")] = None,
    credentials: Credentials = None,
    host: HostArg = None,
) -> GitPullResult:
    """Fetch a remote branch and merge it into the current one; conflicts are listed."""
    return await services(ctx).git.pull(sandbox,
        repo,
        remote=remote,
        branch=branch,
        credentials=credentials,
        host=host,
        on_progress=_progress(ctx),
    )


TOOLS: list[ToolSpec] = [
    ToolSpec(git_clone, "Clone git repository", open_world=True, executes=True),
    ToolSpec(git_status, "Git status", read_only=True, idempotent=True),
    ToolSpec(git_diff, "Git diff", read_only=True, idempotent=True),
    ToolSpec(git_log, "Git log", read_only=True, idempotent=True),
    ToolSpec(git_checkout, "Git switch branch", idempotent=True),
    ToolSpec(git_branches, "Git branches", destructive=True),
    ToolSpec(git_commit, "Git commit"),
    ToolSpec(git_push, "Git push", destructive=True, open_world=True, executes=True),
    ToolSpec(git_pull, "Git pull", open_world=True, executes=True),
]
