"""Reading, writing and listing files in a sandbox through its agent."""

from __future__ import annotations

import base64
import binascii
from typing import Literal

from corral.config import WORKDIR
from corral.errors import InvalidRequest
from corral.service.files.deps import FileDeps
from corral.service.files.models import FileEntry, FileListing, FileRead, FileWritten
from corral.service.validation import check_path, check_size

IMAGE_MAGIC = {
    b"\x89PNG\r\n\x1a\n": "image/png",
    b"\xff\xd8\xff": "image/jpeg",
    b"GIF87a": "image/gif",
    b"GIF89a": "image/gif",
}
MAX_DEPTH = 10
MAX_ENTRIES = 5000


def sniff_image(data: bytes) -> str | None:
    for magic, mime in IMAGE_MAGIC.items():
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def _as_text(data: bytes) -> str | None:
    if b"\x00" in data[:8192]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


async def read_file(
    deps: FileDeps,
    ref: str,
    path: str,
    *,
    start_line: int | None = None,
    end_line: int | None = None,
) -> tuple[FileRead, bytes | None]:
    """Returns the read and, for an image file, its bytes (sent as image content)."""
    full = check_path(path)
    if start_line is not None and start_line < 1:
        raise InvalidRequest(f"start_line counts from 1 (got {start_line})")
    if end_line is not None and end_line < (start_line or 1):
        raise InvalidRequest(f"end_line ({end_line}) must be >= start_line ({start_line or 1})")
    limit = deps.policy.max_file_bytes
    res = await deps.sandboxes.request(ref, "read_file", {"path": full, "max_bytes": limit, "binary": True}, timeout=60)
    data = res.get("bytes", b"")
    size = int(res.get("size", len(data)))
    truncated = bool(res.get("truncated", False))
    mime = sniff_image(data)
    if mime is not None and not truncated:
        return FileRead(path=full, size=size, encoding="image", content="", mime_type=mime), data
    text = _as_text(data)
    if text is None:
        encoded = base64.b64encode(data).decode()
        return FileRead(path=full, size=size, encoding="base64", content=encoded, truncated=truncated), None
    lines = text.splitlines(keepends=True)
    first = start_line or 1
    last = min(end_line or len(lines), len(lines))
    if start_line is not None and first > max(len(lines), 1):
        raise InvalidRequest(f"{full} has {len(lines)} lines; start_line {first} is past the end")
    chunk = "".join(lines[first - 1 : last])
    cap = deps.policy.output_limit * 4
    if len(chunk) > cap:
        chunk, truncated = chunk[:cap], True
    return (
        FileRead(
            path=full,
            size=size,
            encoding="text",
            content=chunk,
            start_line=first,
            end_line=last,
            total_lines=len(lines),
            truncated=truncated,
        ),
        None,
    )


async def write_file(
    deps: FileDeps,
    ref: str,
    path: str,
    content: str,
    *,
    encoding: Literal["text", "base64"] = "text",
    append: bool = False,
) -> FileWritten:
    full = check_path(path)
    if encoding == "base64":
        try:
            data = base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidRequest(
                f"content is not valid base64 ({exc}); send text with encoding='text'"
            ) from exc
    elif encoding == "text":
        data = content.encode()
    else:
        raise InvalidRequest(f"unknown encoding {encoding!r}; use 'text' or 'base64'")
    check_size("content", len(data), deps.policy.max_file_bytes)
    params = {"path": full, "bytes": data, "mkdirs": True, "append": append}
    res = await deps.sandboxes.request(ref, "write_file", params, timeout=60)
    return FileWritten(path=full, size=int(res.get("size", len(data))))


async def list_files(
    deps: FileDeps, ref: str, path: str = WORKDIR, *, depth: int = 1, max_entries: int = 200
) -> FileListing:
    full = check_path(path)
    if not 1 <= depth <= MAX_DEPTH:
        raise InvalidRequest(f"depth must be between 1 and {MAX_DEPTH} (got {depth})")
    if not 1 <= max_entries <= MAX_ENTRIES:
        raise InvalidRequest(f"max_entries must be between 1 and {MAX_ENTRIES} (got {max_entries})")
    res = await deps.sandboxes.request(
        ref, "list_files", {"path": full, "depth": depth, "max_entries": max_entries}, timeout=60
    )
    entries = [FileEntry.model_validate(e) for e in res.get("entries", [])[:max_entries]]
    return FileListing(path=full, entries=entries, truncated=bool(res.get("truncated", False)))


__all__ = ["check_size", "list_files", "read_file", "write_file"]
