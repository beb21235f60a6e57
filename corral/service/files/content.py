"""Reading, writing and listing files in a sandbox through its agent.

Text is read by line number with the agent's `read_lines` (one streaming pass in the sandbox, so
any position of a file of any size), returned numbered like `cat -n` unless raw. Binary files are
described, not dumped into the model's context: size, type and sha256, with the ways to get the
bytes (a byte range as base64, `download`). Images come back as image content.
"""

from __future__ import annotations

import binascii
from typing import Any, Literal

import pybase64

from corral.config import WORKDIR
from corral.errors import InvalidRequest
from corral.service.files.deps import FileDeps
from corral.service.files.models import FileEntry, FileInfo, FileListing, FileRead, FileWritten
from corral.service.files.sniff import IMAGES, sniff
from corral.service.validation import check_path, check_size

MAX_DEPTH = 10
MAX_ENTRIES = 5000
MAX_LINES = 2000  # lines one read returns at most (the caller continues from where it stopped)
DEFAULT_BYTE_COUNT = 64 * 1024
MAX_IMAGE = 5 * 1024 * 1024  # larger images are described, not sent
NUMBER_WIDTH = 6  # `cat -n`


def number_lines(text: str, first: int) -> str:
    """`cat -n` style: the line number right-aligned in 6 columns, a tab, the line."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return "".join(f"{n:>{NUMBER_WIDTH}}\t{line.removesuffix(chr(13))}\n" for n, line in enumerate(lines, first))


async def read_file(
    deps: FileDeps,
    ref: str,
    path: str,
    *,
    start_line: int | None = None,
    end_line: int | None = None,
    raw: bool = False,
    byte_offset: int | None = None,
    byte_count: int | None = None,
) -> tuple[FileRead, bytes | None]:
    """Returns the read and, for an image file, its bytes (sent as image content)."""
    full = check_path(path)
    if byte_offset is not None or byte_count is not None:
        if start_line is not None or end_line is not None:
            raise InvalidRequest("give a line range (start_line/end_line) or a byte range (byte_offset/byte_count)")
        return await read_bytes(deps, ref, full, byte_offset or 0, byte_count), None
    for name, value in (("start_line", start_line), ("end_line", end_line)):
        if value == 0:
            raise InvalidRequest(f"{name} counts from 1 (negative counts from the end: -1 is the last line)")
    params: dict[str, Any] = {
        "path": full,
        "start_line": start_line or 1,
        "end_line": end_line,
        "max_lines": MAX_LINES,
        "max_bytes": deps.policy.output_limit * 4,
    }
    res = await deps.sandboxes.request(ref, "read_lines", params, timeout=90)
    size = int(res.get("size") or 0)
    if res.get("binary"):
        return await _binary(deps, ref, full, size, bytes(res.get("bytes") or b""))
    total = res.get("total_lines")
    first, last = res.get("first_line"), res.get("last_line")
    if last is None and total:
        raise InvalidRequest(f"{full} has {total} lines; start_line {first} is past the end")
    text = bytes(res.get("bytes") or b"").decode("utf-8", "replace")
    if not raw and last is not None:
        text = number_lines(text, int(first or 1))
    return (
        FileRead(
            path=full,
            size=size,
            encoding="text",
            content=text,
            start_line=first if last is not None else None,
            end_line=last,
            total_lines=total,
            truncated=bool(res.get("truncated")),
        ),
        None,
    )


async def read_bytes(deps: FileDeps, ref: str, full: str, offset: int, count: int | None) -> FileRead:
    limit = deps.policy.max_file_bytes
    count = DEFAULT_BYTE_COUNT if count is None else count
    if offset < 0:
        raise InvalidRequest(f"byte_offset must be >= 0 (got {offset})")
    if not 1 <= count <= limit:
        raise InvalidRequest(f"byte_count must be between 1 and {limit} (got {count})")
    params = {"path": full, "offset": offset, "max_bytes": count, "binary": True}
    res = await deps.sandboxes.request(ref, "read_file", params, timeout=90)
    data = bytes(res.get("bytes") or b"")[:count]
    return FileRead(
        path=full,
        size=int(res.get("size") or 0),
        encoding="base64",
        content=pybase64.b64encode_as_string(data),
        byte_offset=offset,
        truncated=bool(res.get("truncated")),
        mime_type=sniff(data) if offset == 0 and data else None,
    )


async def _binary(deps: FileDeps, ref: str, full: str, size: int, head: bytes) -> tuple[FileRead, bytes | None]:
    mime = sniff(head)
    if mime in IMAGES and size <= MAX_IMAGE:
        params = {"path": full, "max_bytes": MAX_IMAGE, "binary": True}
        res = await deps.sandboxes.request(ref, "read_file", params, timeout=90)
        data = bytes(res.get("bytes") or b"")
        if not res.get("truncated") and sniff(data) == mime:
            return FileRead(path=full, size=len(data), encoding="image", mime_type=mime), data
    info = await deps.sandboxes.request(ref, "stat", {"path": full, "sha256": True}, timeout=120)
    sha = info.get("sha256")
    return (
        FileRead(
            path=full,
            size=int(info.get("size") or size),
            encoding="binary",
            mime_type=mime,
            sha256=sha if isinstance(sha, str) else None,
        ),
        None,
    )


async def file_info(deps: FileDeps, ref: str, path: str, *, sha256: bool = False) -> FileInfo:
    full = check_path(path)
    res = await deps.sandboxes.request(ref, "stat", {"path": full, "sha256": sha256, "head": 512}, timeout=120)
    if not res.get("exists"):
        return FileInfo(path=full, exists=False)
    head = res.get("bytes")
    mime = None
    if isinstance(head, bytes) and head:
        mime = "text/plain" if _looks_text(head) else sniff(head)
    return FileInfo(
        path=full,
        exists=True,
        type=res.get("type"),
        size=res.get("size"),
        mode=_octal(res.get("mode")),
        owner=res.get("owner"),
        group=res.get("group"),
        uid=res.get("uid"),
        gid=res.get("gid"),
        mtime=res.get("mtime"),
        link_target=res.get("link_target"),
        mime_type=mime,
        sha256=res.get("sha256") if sha256 else None,
    )


def _looks_text(head: bytes) -> bool:
    if b"\0" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(head) - 3  # only a character cut at the end
    return True


def _octal(mode: object) -> str | None:
    return f"{mode:04o}" if isinstance(mode, int) else None


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
            data = pybase64.b64decode(content, validate=True)
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
    entries = [
        FileEntry.model_validate({**e, "mode": _octal(e.get("mode"))})
        for e in res.get("entries", [])[:max_entries]
        if isinstance(e, dict)
    ]
    return FileListing(path=full, entries=entries, truncated=bool(res.get("truncated", False)))


__all__ = ["check_size", "file_info", "list_files", "read_file", "write_file"]
