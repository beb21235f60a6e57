"""Tools that read, write and list files."""

from __future__ import annotations

from typing import Annotated, Literal

from mcp.server.mcpserver import Context
from pydantic import Field

from corral.service import files
from corral.service.models import FileListing, FileRead, FileWritten
from corral.tools._base import SandboxRef, audited, service_of
from corral.tools._content import with_images

PathArg = Annotated[str, Field(description="Path in the sandbox; relative paths are under /workspace.")]


@audited
async def read_file(
    ctx: Context,
    sandbox: SandboxRef,
    path: PathArg,
    start_line: Annotated[int | None, Field(description="First line to return (1-based).")] = None,
    end_line: Annotated[int | None, Field(description="Last line to return (inclusive).")] = None,
) -> FileRead:
    """Read a file. Text comes back as text (optionally a line range), images as image content,
    other binary files as base64. Files over 8 MiB are truncated."""
    result, image = await files.read_file(
        service_of(ctx), sandbox, path, start_line=start_line, end_line=end_line
    )
    if image is None:
        return result
    return with_images(result, [(image, result.mime_type or "image/png")])  # type: ignore[return-value]


@audited
async def write_file(
    ctx: Context,
    sandbox: SandboxRef,
    path: PathArg,
    content: Annotated[str, Field(description="File content: text, or base64 if encoding='base64'.")],
    encoding: Annotated[Literal["text", "base64"], Field(description="How `content` is encoded.")] = "text",
    append: Annotated[bool, Field(description="Append instead of replacing the file.")] = False,
) -> FileWritten:
    """Write a file (creating parent directories), replacing it unless append=true. Max 8 MiB."""
    return await files.write_file(service_of(ctx), sandbox, path, content, encoding=encoding, append=append)


@audited
async def list_files(
    ctx: Context,
    sandbox: SandboxRef,
    path: Annotated[str, Field(description="Directory to list (default /workspace).")] = "/workspace",
    depth: Annotated[int, Field(description="How many levels to descend (1 = direct children).")] = 1,
    max_entries: Annotated[int, Field(description="Stop after this many entries.")] = 200,
) -> FileListing:
    """List a directory: paths, types, sizes and modification times, hidden files included."""
    return await files.list_files(service_of(ctx), sandbox, path, depth=depth, max_entries=max_entries)
