"""Tools that edit, delete, move, search and find files, and copy them between host and sandbox."""

from __future__ import annotations

from typing import Annotated, Literal

from mcp.server.mcpserver import Context
from pydantic import Field

from corral.service import fileops
from corral.service.fileops import (
    DirMade,
    FileEdited,
    FindResult,
    PathDeleted,
    PathMoved,
    SearchResult,
    Transfer,
)
from corral.tools import ToolSpec
from corral.tools._base import SandboxRef, audited, service_of

PathArg = Annotated[str, Field(description="Path in the sandbox; relative paths are under /workspace.")]
DirArg = Annotated[str, Field(description="Directory to search under (default /workspace).")]
HostPath = Annotated[
    str,
    Field(description="Path on the server's machine, inside a directory the operator allowed."),
]
Overwrite = Annotated[bool, Field(description="Replace the destination if it exists.")]


@audited
async def edit_file(
    ctx: Context,
    sandbox: SandboxRef,
    path: PathArg,
    new_text: Annotated[str, Field(description="The replacement text ('' deletes).")],
    old_text: Annotated[
        str | None, Field(description="Exact text to replace, whitespace included; must occur once.")
    ] = None,
    replace_all: Annotated[bool, Field(description="Replace every occurrence of old_text.")] = False,
    start_line: Annotated[
        int | None, Field(description="Instead of old_text: first line to replace (1-based).")
    ] = None,
    end_line: Annotated[int | None, Field(description="Last line to replace (default start_line).")] = None,
) -> FileEdited:
    """Edit a file in place: replace old_text with new_text, or replace lines start_line..end_line.

    Fails without changing anything if old_text occurs 0 or several times (the error says where).
    Returns the changed region with line numbers.
    """
    return await fileops.edit_file(
        service_of(ctx),
        sandbox,
        path,
        new_text,
        old_text=old_text,
        replace_all=replace_all,
        start_line=start_line,
        end_line=end_line,
    )


@audited
async def delete_path(
    ctx: Context,
    sandbox: SandboxRef,
    path: PathArg,
    recursive: Annotated[bool, Field(description="Needed to delete a non-empty directory.")] = False,
) -> PathDeleted:
    """Delete a file, symlink or directory (/workspace itself cannot be deleted)."""
    return await fileops.delete_path(service_of(ctx), sandbox, path, recursive=recursive)


@audited
async def move_path(
    ctx: Context,
    sandbox: SandboxRef,
    source: PathArg,
    destination: Annotated[str, Field(description="The new full path (not a directory to move into).")],
    overwrite: Overwrite = False,
) -> PathMoved:
    """Move or rename a file or directory, creating the destination's parent directories."""
    return await fileops.move_path(service_of(ctx), sandbox, source, destination, overwrite=overwrite)


@audited
async def make_dir(ctx: Context, sandbox: SandboxRef, path: PathArg) -> DirMade:
    """Create a directory and any missing parents; fine if it already exists."""
    return await fileops.make_dir(service_of(ctx), sandbox, path)


@audited
async def search_files(
    ctx: Context,
    sandbox: SandboxRef,
    pattern: Annotated[str, Field(description="Python regular expression (or plain text with literal=true).")],
    path: DirArg = "/workspace",
    glob: Annotated[str | None, Field(description="Only files matching this glob, e.g. '*.py'.")] = None,
    literal: Annotated[bool, Field(description="Treat pattern as plain text.")] = False,
    ignore_case: bool = False,
    max_results: Annotated[int, Field(description="Stop after this many matches (max 1000).")] = 100,
) -> SearchResult:
    """Search file contents like `grep -rn`: each matching line with its path and line number.

    Skips binary files and .git, node_modules, __pycache__ and .venv directories.
    """
    return await fileops.search_files(
        service_of(ctx),
        sandbox,
        pattern,
        path=path,
        glob=glob,
        literal=literal,
        ignore_case=ignore_case,
        max_results=max_results,
    )


@audited
async def find_files(
    ctx: Context,
    sandbox: SandboxRef,
    pattern: Annotated[
        str,
        Field(description="Glob: '*.py' matches names at any depth; 'src/**/*.ts' matches paths under `path`."),
    ],
    path: DirArg = "/workspace",
    type: Annotated[Literal["file", "dir", "any"], Field(description="Only files, only directories, or both.")] = "any",
    max_results: Annotated[int, Field(description="Stop after this many entries (max 1000).")] = 200,
) -> FindResult:
    """Find files and directories by name or path glob (*, **, ?, [abc], {a,b}).

    Skips the insides of .git, node_modules, __pycache__ and .venv directories.
    """
    return await fileops.find_files(service_of(ctx), sandbox, pattern, path=path, type=type, max_results=max_results)


@audited
async def upload(
    ctx: Context, sandbox: SandboxRef, host_path: HostPath, path: PathArg, overwrite: Overwrite = False
) -> Transfer:
    """Copy a file or directory from the server's machine into the sandbox.

    Only paths under host directories the operator allowed (--allow-host-dir) can be used.
    """
    return await fileops.upload(service_of(ctx), sandbox, host_path, path, overwrite=overwrite)


@audited
async def download(
    ctx: Context, sandbox: SandboxRef, path: PathArg, host_path: HostPath, overwrite: Overwrite = False
) -> Transfer:
    """Copy a file or directory from the sandbox to the server's machine.

    Only paths under host directories the operator allowed (--allow-host-dir) can be used.
    """
    return await fileops.download(service_of(ctx), sandbox, path, host_path, overwrite=overwrite)


FILE_TOOLS: list[ToolSpec] = [
    ToolSpec(edit_file, "Edit file", destructive=True),
    ToolSpec(delete_path, "Delete file or directory", destructive=True),
    ToolSpec(move_path, "Move or rename", destructive=True),
    ToolSpec(make_dir, "Make directory", idempotent=True),
    ToolSpec(search_files, "Search file contents", read_only=True, idempotent=True),
    ToolSpec(find_files, "Find files by glob", read_only=True, idempotent=True),
    ToolSpec(upload, "Upload from host", destructive=True, idempotent=True),
    ToolSpec(download, "Download to host", idempotent=True),
]
