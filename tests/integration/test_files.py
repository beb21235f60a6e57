"""read_file / write_file / list_files through the MCP session."""

from __future__ import annotations

import base64
import struct
import zlib

from mcp import Client
from mcp.types import ImageContent

from tests.helpers import call_error, call_ok


def tiny_png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00"))
        + chunk(b"IEND", b"")
    )


async def test_text_round_trip_creates_parent_dirs(client: Client, sandbox: str) -> None:
    written = await call_ok(client, "write_file", sandbox=sandbox, path="deep/er/hello.txt", content="héllo\nworld\n")
    assert written == {"path": "/workspace/deep/er/hello.txt", "size": len("héllo\nworld\n".encode())}
    read = await call_ok(client, "read_file", sandbox=sandbox, path="/workspace/deep/er/hello.txt")
    assert read["encoding"] == "text" and read["content"] == "héllo\nworld\n" and read["total_lines"] == 2


async def test_line_ranges(client: Client, sandbox: str) -> None:
    body = "".join(f"line {i}\n" for i in range(1, 101))
    await call_ok(client, "write_file", sandbox=sandbox, path="lines.txt", content=body)
    read = await call_ok(client, "read_file", sandbox=sandbox, path="lines.txt", start_line=10, end_line=12)
    assert read["content"] == "line 10\nline 11\nline 12\n"
    assert (read["start_line"], read["end_line"], read["total_lines"]) == (10, 12, 100)
    message = await call_error(client, "read_file", sandbox=sandbox, path="lines.txt", start_line=500)
    assert "has 100 lines" in message


async def test_binary_files_round_trip_as_base64(client: Client, sandbox: str) -> None:
    data = bytes(range(256)) * 4
    await call_ok(
        client,
        "write_file",
        sandbox=sandbox,
        path="blob.bin",
        content=base64.b64encode(data).decode(),
        encoding="base64",
    )
    read = await call_ok(client, "read_file", sandbox=sandbox, path="blob.bin")
    assert read["encoding"] == "base64" and base64.b64decode(read["content"]) == data
    assert "not valid base64" in await call_error(
        client, "write_file", sandbox=sandbox, path="x.bin", content="***", encoding="base64"
    )


async def test_images_come_back_as_image_content(client: Client, sandbox: str) -> None:
    png = tiny_png()
    await call_ok(
        client, "write_file", sandbox=sandbox, path="pic.png", content=base64.b64encode(png).decode(), encoding="base64"
    )
    result = await client.call_tool("read_file", {"sandbox": sandbox, "path": "pic.png"})
    assert not result.is_error
    images = [c for c in result.content if isinstance(c, ImageContent)]
    assert len(images) == 1 and images[0].mime_type == "image/png"
    assert base64.b64decode(images[0].data) == png


async def test_append_and_list_files(client: Client, sandbox: str) -> None:
    await call_ok(client, "write_file", sandbox=sandbox, path="tree/a.txt", content="a")
    await call_ok(client, "write_file", sandbox=sandbox, path="tree/a.txt", content="b", append=True)
    await call_ok(client, "write_file", sandbox=sandbox, path="tree/sub/b.txt", content="bb")
    read = await call_ok(client, "read_file", sandbox=sandbox, path="tree/a.txt")
    assert read["content"] == "ab"
    listing = await call_ok(client, "list_files", sandbox=sandbox, path="tree", depth=2)
    by_path = {e["path"]: e for e in listing["entries"]}
    assert by_path["a.txt"]["size"] == 2 and by_path["sub"]["type"] == "dir" and "sub/b.txt" in by_path
    capped = await call_ok(client, "list_files", sandbox=sandbox, path="tree", depth=2, max_entries=1)
    assert capped["truncated"] is True and len(capped["entries"]) == 1


async def test_missing_files_and_directories_are_explained(client: Client, sandbox: str) -> None:
    assert "no such file" in (await call_error(client, "read_file", sandbox=sandbox, path="nope.txt")).lower()
    assert "director" in (await call_error(client, "read_file", sandbox=sandbox, path="/workspace")).lower()


async def test_oversized_writes_are_refused(client: Client, sandbox: str) -> None:
    message = await call_error(client, "write_file", sandbox=sandbox, path="big.txt", content="x" * (9 * 1024 * 1024))
    assert "limit is" in message
