"""read_file / write_file / list_files through the MCP session."""

from __future__ import annotations

import base64
import hashlib
import struct
import zlib

from mcp import Client
from mcp.types import ImageContent

from tests.helpers import call_error, call_ok, text_of

FILE_INFO_FIELDS = (
    "type", "size", "mode", "owner", "group", "uid", "gid", "mtime", "link_target", "mime_type", "sha256"
)


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
    assert read["encoding"] == "text" and read["content"] == "     1\théllo\n     2\tworld\n"
    assert read["total_lines"] == 2 and read["truncated"] is False
    raw = await call_ok(client, "read_file", sandbox=sandbox, path="deep/er/hello.txt", raw=True)
    assert raw["content"] == "héllo\nworld\n"


async def test_line_ranges(client: Client, sandbox: str) -> None:
    body = "".join(f"line {i}\n" for i in range(1, 101))
    await call_ok(client, "write_file", sandbox=sandbox, path="lines.txt", content=body)
    read = await call_ok(client, "read_file", sandbox=sandbox, path="lines.txt", start_line=10, end_line=12, raw=True)
    assert read["content"] == "line 10\nline 11\nline 12\n"
    assert (read["start_line"], read["end_line"], read["total_lines"], read["truncated"]) == (10, 12, 100, False)
    tail = await call_ok(client, "read_file", sandbox=sandbox, path="lines.txt", start_line=-2)
    assert tail["content"] == "    99\tline 99\n   100\tline 100\n" and tail["truncated"] is False
    message = await call_error(client, "read_file", sandbox=sandbox, path="lines.txt", start_line=500)
    assert "has 100 lines" in message


async def test_the_last_line_of_a_two_million_line_file_by_number(client: Client, sandbox: str) -> None:
    made = await call_ok(
        client, "run_command", sandbox=sandbox, command="seq -f 'line %.0f' 1 2000000 > big.txt && wc -l < big.txt"
    )
    assert made["stdout"].strip() == "2000000"
    result = await client.call_tool("read_file", {"sandbox": sandbox, "path": "big.txt", "start_line": 2000000})
    assert not result.is_error, text_of(result)
    read = result.structured_content
    assert read["content"] == "2000000\tline 2000000\n"
    assert (read["start_line"], read["end_line"], read["total_lines"]) == (2000000, 2000000, 2000000)
    assert text_of(result).startswith("/workspace/big.txt: lines 2000000-2000000 of 2000000\n")
    middle = await call_ok(client, "read_file", sandbox=sandbox, path="big.txt", start_line=1187464, end_line=1187465)
    assert middle["content"] == "1187464\tline 1187464\n1187465\tline 1187465\n"
    first = await call_ok(client, "read_file", sandbox=sandbox, path="big.txt")
    assert first["end_line"] == 2000 and first["truncated"] is True and first["content"].endswith("\tline 2000\n")


async def test_binary_files_are_summarised_and_read_by_byte_range(client: Client, sandbox: str) -> None:
    await call_ok(client, "run_command", sandbox=sandbox, command="head -c 3000000 /dev/urandom | gzip -1 > blob.gz")
    digest = (await call_ok(client, "run_command", sandbox=sandbox, command="sha256sum blob.gz"))["stdout"].split()[0]
    size = int((await call_ok(client, "run_command", sandbox=sandbox, command="stat -c %s blob.gz"))["stdout"])
    result = await client.call_tool("read_file", {"sandbox": sandbox, "path": "blob.gz"})
    assert not result.is_error
    summary = result.structured_content
    assert summary["encoding"] == "binary" and summary["content"] == "" and summary["size"] == size
    assert summary["mime_type"] == "application/gzip" and summary["sha256"] == digest
    text = text_of(result)
    assert len(text) < 500 and "byte_offset" in text and "download" in text
    head = await call_ok(client, "read_file", sandbox=sandbox, path="blob.gz", byte_offset=0, byte_count=2)
    assert head["encoding"] == "base64" and base64.b64decode(head["content"]) == b"\x1f\x8b" and head["truncated"]
    data = bytes(range(256)) * 4
    encoded = base64.b64encode(data).decode()
    await call_ok(client, "write_file", sandbox=sandbox, path="blob.bin", content=encoded, encoding="base64")
    whole = await call_ok(client, "read_file", sandbox=sandbox, path="blob.bin", byte_offset=0, byte_count=4096)
    assert base64.b64decode(whole["content"]) == data and whole["truncated"] is False
    assert "not valid base64" in await call_error(
        client, "write_file", sandbox=sandbox, path="x.bin", content="***", encoding="base64"
    )


async def test_megabytes_cross_intact_in_binary_frames(client: Client, sandbox: str) -> None:
    data = bytes(range(256)) * (3 * 4096) + b"end"  # 3 MiB + 3 bytes, every byte value
    encoded = base64.b64encode(data).decode()
    written = await call_ok(client, "write_file", sandbox=sandbox, path="mb.bin", content=encoded, encoding="base64")
    assert written["size"] == len(data)
    digest = (await call_ok(client, "run_command", sandbox=sandbox, command="sha256sum mb.bin"))["stdout"].split()[0]
    assert digest == hashlib.sha256(data).hexdigest()
    back = await call_ok(client, "read_file", sandbox=sandbox, path="mb.bin", byte_offset=0, byte_count=len(data))
    assert back["content"] == encoded and back["truncated"] is False
    tail = await call_ok(client, "read_file", sandbox=sandbox, path="mb.bin", byte_offset=len(data) - 3)
    assert base64.b64decode(tail["content"]) == b"end"


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


async def test_file_info_and_listing_show_mode_owner_and_link_target(client: Client, sandbox: str) -> None:
    await call_ok(client, "write_file", sandbox=sandbox, path="info/run.sh", content="#!/bin/sh\n")
    await call_ok(client, "run_command", sandbox=sandbox, command="cd info && chmod 750 run.sh && ln -s run.sh link")
    info = await call_ok(client, "get_file_info", sandbox=sandbox, path="info/run.sh", sha256=True)
    assert info["exists"] is True and info["type"] == "file" and info["mode"] == "0750" and info["size"] == 10
    assert info["owner"] == "sandbox" and info["mime_type"] == "text/plain"
    assert info["sha256"] == hashlib.sha256(b"#!/bin/sh\n").hexdigest()
    link = await call_ok(client, "get_file_info", sandbox=sandbox, path="info/link")
    assert link["type"] == "symlink" and link["link_target"] == "run.sh" and link["mode"] == "0750"
    assert (await call_ok(client, "get_file_info", sandbox=sandbox, path="info/nope")) == {
        "path": "/workspace/info/nope", **{k: None for k in FILE_INFO_FIELDS}, "exists": False
    }
    listing = await call_ok(client, "list_files", sandbox=sandbox, path="info")
    by_path = {e["path"]: e for e in listing["entries"]}
    assert by_path["run.sh"]["mode"] == "0750" and by_path["run.sh"]["owner"] == "sandbox"
    assert by_path["link"]["type"] == "symlink" and by_path["link"]["link_target"] == "run.sh"


async def test_append_and_list_files(client: Client, sandbox: str) -> None:
    await call_ok(client, "write_file", sandbox=sandbox, path="tree/a.txt", content="a")
    await call_ok(client, "write_file", sandbox=sandbox, path="tree/a.txt", content="b", append=True)
    await call_ok(client, "write_file", sandbox=sandbox, path="tree/sub/b.txt", content="bb")
    read = await call_ok(client, "read_file", sandbox=sandbox, path="tree/a.txt", raw=True)
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


async def test_big_writes_pass_through_an_inbox_the_sandbox_cannot_write(client: Client, sandbox: str) -> None:
    import os
    from pathlib import Path

    import docker

    from corral.service.containers import LABEL_ROLE, LABEL_SANDBOX

    data = os.urandom(1024 * 1024)
    encoded = base64.b64encode(data).decode()
    await call_ok(client, "write_file", sandbox=sandbox, path="inbox.bin", content=encoded, encoding="base64")
    digest = (await call_ok(client, "run_command", sandbox=sandbox, command="sha256sum inbox.bin"))["stdout"]
    assert digest.split()[0] == hashlib.sha256(data).hexdigest()
    # The host staged the payload in the sandbox's agent volume (the inbox exists) and removed it.
    api = docker.from_env().api
    try:
        (volume,) = api.volumes(filters={"label": [f"{LABEL_SANDBOX}={sandbox}", f"{LABEL_ROLE}=agent"]})["Volumes"]
    finally:
        api.close()
    inbox = Path(volume["Mountpoint"]) / "inbox"
    assert inbox.is_dir() and list(inbox.iterdir()) == []
    # Sandbox code can neither add nor replace anything there.
    tried = await call_ok(
        client, "run_command", sandbox=sandbox, command="touch /opt/corral/inbox/x; ln -s /etc /opt/corral/inbox/y"
    )
    assert tried["exit_code"] != 0 and list(inbox.iterdir()) == []


async def test_big_reads_come_back_through_the_workspace_outbox_and_survive_a_planted_symlink(client: Client) -> None:
    import os

    created = await call_ok(client, "create_sandbox", name="outbox")
    sandbox = created["id"]
    try:
        data = os.urandom(1024 * 1024)
        encoded = base64.b64encode(data).decode()
        await call_ok(client, "write_file", sandbox=sandbox, path="out.bin", content=encoded, encoding="base64")
        back = await call_ok(client, "read_file", sandbox=sandbox, path="out.bin", byte_offset=0, byte_count=len(data))
        assert back["content"] == encoded
        left = await call_ok(client, "run_command", sandbox=sandbox, command="ls -A /workspace/.corral/outbox")
        assert left["exit_code"] == 0 and left["stdout"] == ""  # used, and emptied by the host
        # Sandbox code swaps the outbox for a symlink: the host refuses to follow it, and the read
        # still returns the file's bytes (on the stream).
        await call_ok(
            client, "run_command", sandbox=sandbox,
            command="rm -rf /workspace/.corral/outbox && ln -s /tmp /workspace/.corral/outbox",
        )
        again = await call_ok(client, "read_file", sandbox=sandbox, path="out.bin", byte_offset=0, byte_count=len(data))
        assert again["content"] == encoded
    finally:
        await call_ok(client, "delete_sandbox", sandbox=sandbox)
