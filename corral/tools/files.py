"""files: read, write, list, edit, delete, move, search and find files; host transfers."""

from __future__ import annotations

from typing import Annotated, Literal

from mcp.server.mcpserver import Context
from pydantic import Field

from corral.config import WORKDIR
from corral.service.files.models import (
    DirMade,
    FileEdited,
    FileListing,
    FileRead,
    FileWritten,
    FindResult,
    PathDeleted,
    PathMoved,
    SearchResult,
    Transfer,
)
from corral.tools._base import SandboxRef, ToolSpec, services
from corral.tools._content import with_images

PathArg = Annotated[str, Field(description="Path in the sandbox; relative paths are under /workspace.")]
DirArg = Annotated[str, Field(description="Directory to search under (default /workspace).")]
HostPath = Annotated[
    str,
    Field(description="Path on the server's machine, inside a directory the operator allowed."),
]
Overwrite = Annotated[bool, Field(description="Replace the destination if it exists.")]


async def read_file(
    ctx: Context,
    sandbox: SandboxRef,
    path: PathArg,
    start_line: Annotated[int | None, Field(description="First line to return (1-based).")] = None,
    end_line: Annotated[int | None, Field(description="Last line to return (inclusive).")] = None,
) -> FileRead:
    """Read a file. Text comes back as text (optionally a line range), images as image content,
    other binary files as base64. Files over 8 MiB are truncated."""
    result, image = await services(ctx).files.read_file(sandbox, path, start_line=start_line, end_line=end_line)
    if image is None:
        return result
    return with_images(result, [(image, result.mime_type or "image/png")])  # type: ignore[return-value]


async def write_file(
    ctx: Context,
    sandbox: SandboxRef,
    path: PathArg,
    content: Annotated[str, Field(description="File content: text, or base64 if encoding='base64'.")],
    encoding: Annotated[Literal["text", "base64"], Field(description="How `content` is encoded.")] = "text",
    append: Annotated[bool, Field(description="Append instead of replacing the file.")] = False,
) -> FileWritten:
    """Write a file (creating parent directories), replacing it unless append=true. Max 8 MiB."""
    return await services(ctx).files.write_file(sandbox, path, content, encoding=encoding, append=append)


async def list_files(
    ctx: Context,
    sandbox: SandboxRef,
    path: Annotated[str, Field(description="Directory to list (default /workspace).")] = WORKDIR,
    depth: Annotated[int, Field(description="How many levels to descend (1 = direct children).")] = 1,
    max_entries: Annotated[int, Field(description="Stop after this many entries.")] = 200,
) -> FileListing:
    """List a directory: paths, types, sizes and modification times, hidden files included."""
    return await services(ctx).files.list_files(sandbox, path, depth=depth, max_entries=max_entries)


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
    return await services(ctx).files.edit_file(sandbox,
        path,
        new_text,
        old_text=old_text,
        replace_all=replace_all,
        start_line=start_line,
        end_line=end_line,
    )


async def delete_path(
    ctx: Context,
    sandbox: SandboxRef,
    path: PathArg,
    recursive: Annotated[bool, Field(description="Needed to delete a non-empty directory.")] = False,
) -> PathDeleted:
    """Delete a file, symlink or directory (/workspace itself cannot be deleted)."""
    return await services(ctx).files.delete_path(sandbox, path, recursive=recursive)


async def move_path(
    ctx: Context,
    sandbox: SandboxRef,
    source: PathArg,
    destination: Annotated[str, Field(description="The new full path (not a directory to move into).")],
    overwrite: Overwrite = False,
) -> PathMoved:
    """Move or rename a file or directory, creating the destination's parent directories."""
    return await services(ctx).files.move_path(sandbox, source, destination, overwrite=overwrite)


async def make_dir(ctx: Context, sandbox: SandboxRef, path: PathArg) -> DirMade:
    """Create a directory and any missing parents; fine if it already exists."""
    return await services(ctx).files.make_dir(sandbox, path)


async def search_files(
    ctx: Context,
    sandbox: SandboxRef,
    pattern: Annotated[str, Field(description="Python regular expression (or plain text with literal=true).")],
    path: DirArg = WORKDIR,
    glob: Annotated[str | None, Field(description="Only files matching this glob, e.g. '*.py'.")] = None,
    literal: Annotated[bool, Field(description="Treat pattern as plain text.")] = False,
    ignore_case: bool = False,
    max_results: Annotated[int, Field(description="Stop after this many matches (max 1000).")] = 100,
) -> SearchResult:
    """Search file contents like `grep -rn`: each matching line with its path and line number.

    Skips binary files and .git, node_modules, __pycache__ and .venv directories.
    """
    return await services(ctx).files.search_files(sandbox,
        pattern,
        path=path,
        glob=glob,
        literal=literal,
        ignore_case=ignore_case,
        max_results=max_results,
    )


async def find_files(
    ctx: Context,
    sandbox: SandboxRef,
    pattern: Annotated[
        str,
        Field(description="Glob: '*.py' matches names at any depth; 'src/**/*.ts' matches paths under `path`."),
    ],
    path: DirArg = WORKDIR,
    type: Annotated[Literal["file", "dir", "any"], Field(description="Only files, only directories, or both.")] = "any",
    max_results: Annotated[int, Field(description="Stop after this many entries (max 1000).")] = 200,
) -> FindResult:
    """Find files and directories by name or path glob (*, **, ?, [abc], {a,b}).

    Skips the insides of .git, node_modules, __pycache__ and .venv directories.
    """
    return await services(ctx).files.find_files(sandbox, pattern, path=path, type=type, max_results=max_results)


async def upload(
    ctx: Context, sandbox: SandboxRef, host_path: HostPath, path: PathArg, overwrite: Overwrite = False
) -> Transfer:
    """Copy a file or directory from the server's machine into the sandbox.

    Only paths under host directories the operator allowed (--allow-host-dir) can be used.
    """
    return await services(ctx).files.upload(sandbox, host_path, path, overwrite=overwrite)


async def download(
    ctx: Context, sandbox: SandboxRef, path: PathArg, host_path: HostPath, overwrite: Overwrite = False
) -> Transfer:
    """Copy a file or directory from the sandbox to the server's machine.

    Only paths under host directories the operator allowed (--allow-host-dir) can be used.
    """
    return await services(ctx).files.download(sandbox, path, host_path, overwrite=overwrite)


TOOLS: list[ToolSpec] = [
    ToolSpec(read_file, "Read file", read_only=True, idempotent=True),
    ToolSpec(write_file, "Write file", destructive=True, idempotent=True),
    ToolSpec(list_files, "List files", read_only=True, idempotent=True),
    ToolSpec(edit_file, "Edit file", destructive=True),
    ToolSpec(delete_path, "Delete file or directory", destructive=True),
    ToolSpec(move_path, "Move or rename", destructive=True),
    ToolSpec(make_dir, "Make directory", idempotent=True),
    ToolSpec(search_files, "Search file contents", read_only=True, idempotent=True),
    ToolSpec(find_files, "Find files by glob", read_only=True, idempotent=True),
    ToolSpec(upload, "Upload from host", destructive=True, idempotent=True),
    ToolSpec(download, "Download to host", idempotent=True),
]
