"""files: read, write, list, edit, delete, move, search and find files; host transfers."""

from __future__ import annotations

import time
from typing import Annotated, Literal

from mcp.server.mcpserver import Context
from pydantic import Field

from corral.config import WORKDIR
from corral.service.files.models import (
    DirMade,
    FileEdited,
    FileInfo,
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
from corral.tools._render import renders

MAX_SHOWN = 500  # listing lines in the text; the structured result has them all

PathArg = str
DirArg = str
HostPath = Annotated[str, Field(description="Path on the server, in an allowed directory.")]
Overwrite = bool
Line = Annotated[int | None, Field(description="1-based; negative counts from the end.")]


async def read_file(
    ctx: Context,
    sandbox: SandboxRef,
    path: PathArg,
    start_line: Line = None,
    end_line: Line = None,
    raw: Annotated[bool, Field(description="No line numbers.")] = False,
    byte_offset: Annotated[int | None, Field(description="Read bytes (base64) instead.")] = None,
    byte_count: Annotated[int | None, Field(description="Default 64 KiB.")] = None,
) -> FileRead:
    """Read a text file as numbered lines (2000 per call at most). Images come back as images;
    other binary files are described (type, size, sha256) unless you ask for bytes."""
    result, image = await services(ctx).files.read_file(
        sandbox,
        path,
        start_line=start_line,
        end_line=end_line,
        raw=raw,
        byte_offset=byte_offset,
        byte_count=byte_count,
    )
    if image is None:
        return result
    return with_images(result, [(image, result.mime_type or "image/png")])  # type: ignore[return-value]


@renders(FileRead)
def _read_text(r: FileRead) -> str:
    if r.encoding == "text":
        if r.end_line is None:
            return f"{r.path}: empty ({r.size} bytes)" if not r.total_lines else f"{r.path}: no such line"
        total = "?" if r.total_lines is None else r.total_lines
        more = f"; more from start_line={r.end_line + 1}" if r.truncated else ""
        return f"{r.path}: lines {r.start_line}-{r.end_line} of {total}{more}\n{r.content}"
    if r.encoding == "image":
        return f"{r.path}: {r.mime_type} image, {r.size} bytes"
    if r.encoding == "base64":
        first = r.byte_offset or 0
        count = len(r.content) * 3 // 4 - r.content[-2:].count("=")
        head = f"{r.path}: bytes {first}-{first + count - 1} of {r.size} as base64"
        if r.truncated:
            head += f"; more from byte_offset={first + count}"
        if len(r.content) > 98304:
            return head + " (too long to show here: in the structured result's content)"
        return f"{head}\n{r.content}"
    return (
        f"{r.path}: binary file, {r.mime_type}, {r.size} bytes, sha256 {r.sha256 or '?'}. Not shown: "
        "pass byte_offset/byte_count for bytes as base64, use download to copy it to the server, or "
        "run_command (e.g. file, xxd | head)."
    )


async def write_file(
    ctx: Context,
    sandbox: SandboxRef,
    path: PathArg,
    content: Annotated[str, Field(description="Text, or base64 with encoding='base64'.")],
    encoding: Literal["text", "base64"] = "text",
    append: bool = False,
) -> FileWritten:
    """Write a file (max 8 MiB), creating parent directories."""
    return await services(ctx).files.write_file(sandbox, path, content, encoding=encoding, append=append)


async def list_files(
    ctx: Context,
    sandbox: SandboxRef,
    path: str = WORKDIR,
    depth: Annotated[int, Field(description="Levels (1 = direct children).")] = 1,
    max_entries: int = 200,
) -> FileListing:
    """List a directory (hidden files too): type, size, mode, owner, mtime, symlink target."""
    return await services(ctx).files.list_files(sandbox, path, depth=depth, max_entries=max_entries)


@renders(FileListing)
def _listing_text(r: FileListing) -> str:
    lines = [f"{r.path}: {len(r.entries)} entries{' (truncated)' if r.truncated else ''}"]
    for e in r.entries[:MAX_SHOWN]:
        name = e.path + ("/" if e.type == "dir" else "") + (f" -> {e.link_target}" if e.link_target else "")
        when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(e.mtime))
        lines.append(f"{e.mode or '?'} {e.owner or '?'} {e.size:>9} {when} {name}")
    return "\n".join(lines)


async def get_file_info(
    ctx: Context,
    sandbox: SandboxRef,
    path: PathArg,
    sha256: bool = False,
) -> FileInfo:
    """Whether a path exists; its type, size, mode, owner, mtime, symlink target, MIME type."""
    return await services(ctx).files.file_info(sandbox, path, sha256=sha256)


async def edit_file(
    ctx: Context,
    sandbox: SandboxRef,
    path: PathArg,
    new_text: str,
    old_text: Annotated[str | None, Field(description="Exact text; must occur once.")] = None,
    replace_all: bool = False,
    start_line: int | None = None,
    end_line: int | None = None,
) -> FileEdited:
    """Replace old_text (or old_string) with new_text (or new_string), or lines
    start_line..end_line. Changes nothing unless old_text occurs exactly once."""
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
    recursive: Annotated[bool, Field(description="For a non-empty directory.")] = False,
    missing_ok: bool = False,
) -> PathDeleted:
    """Delete a file, symlink or directory."""
    return await services(ctx).files.delete_path(sandbox, path, recursive=recursive, missing_ok=missing_ok)


async def move_path(
    ctx: Context,
    sandbox: SandboxRef,
    source: PathArg,
    destination: Annotated[str, Field(description="The new path itself.")],
    overwrite: Overwrite = False,
) -> PathMoved:
    """Move or rename a file or directory."""
    return await services(ctx).files.move_path(sandbox, source, destination, overwrite=overwrite)


async def make_dir(ctx: Context, sandbox: SandboxRef, path: PathArg) -> DirMade:
    """Create a directory and its parents (fine if it exists)."""
    return await services(ctx).files.make_dir(sandbox, path)


async def search_files(
    ctx: Context,
    sandbox: SandboxRef,
    pattern: Annotated[str, Field(description="Python regex, or text with literal=true.")],
    path: DirArg = WORKDIR,
    glob: Annotated[str | None, Field(description="e.g. '*.py'")] = None,
    literal: bool = False,
    ignore_case: bool = False,
    max_results: int = 100,
) -> SearchResult:
    """Search file contents like grep -rn (skips binary files, .git, node_modules, .venv)."""
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
    pattern: Annotated[str, Field(description="'*.py' (any depth) or 'src/**/*.ts'")],
    path: DirArg = WORKDIR,
    type: Literal["file", "dir", "any"] = "any",
    max_results: int = 200,
) -> FindResult:
    """Find files and directories by glob (skips inside .git, node_modules, .venv)."""
    return await services(ctx).files.find_files(sandbox, pattern, path=path, type=type, max_results=max_results)


async def upload(
    ctx: Context, sandbox: SandboxRef, host_path: HostPath, path: PathArg, overwrite: Overwrite = False
) -> Transfer:
    """Copy a file or directory from the server (allowed directories only) into the sandbox."""
    return await services(ctx).files.upload(sandbox, host_path, path, overwrite=overwrite)


async def download(
    ctx: Context, sandbox: SandboxRef, path: PathArg, host_path: HostPath, overwrite: Overwrite = False
) -> Transfer:
    """Copy a file or directory from the sandbox to the server (allowed directories only)."""
    return await services(ctx).files.download(sandbox, path, host_path, overwrite=overwrite)


TOOLS: list[ToolSpec] = [
    ToolSpec(read_file, "Read file", read_only=True, idempotent=True),
    ToolSpec(write_file, "Write file", destructive=True, idempotent=True),
    ToolSpec(list_files, "List files", read_only=True, idempotent=True),
    ToolSpec(get_file_info, "File info", read_only=True, idempotent=True),
    ToolSpec(edit_file, "Edit file", destructive=True, aliases={"old_string": "old_text", "new_string": "new_text"}),
    ToolSpec(delete_path, "Delete file or directory", destructive=True, idempotent=True),
    ToolSpec(move_path, "Move or rename", destructive=True),
    ToolSpec(make_dir, "Make directory", idempotent=True),
    ToolSpec(search_files, "Search file contents", read_only=True, idempotent=True),
    ToolSpec(find_files, "Find files by glob", read_only=True, idempotent=True),
    ToolSpec(upload, "Upload from host", destructive=True, idempotent=True),
    ToolSpec(download, "Download to host", idempotent=True),
]
