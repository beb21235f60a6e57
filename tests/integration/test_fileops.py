"""edit_file, delete_path, move_path, make_dir, search_files, find_files, upload and download."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from mcp import Client

from corral.config import Settings
from corral.server import build_server
from tests.helpers import call_error, call_ok
from tests.integration.cleanup import reap_containers

# -- through the MCP session, in a real sandbox ---------------------------------------------------------


async def test_edit_file_by_snippet_and_by_lines(client: Client, sandbox: str) -> None:
    await call_ok(client, "write_file", sandbox=sandbox, path="edit/app.py", content="a = 1\nb = 2\na = 1\n")
    message = await call_error(client, "edit_file", sandbox=sandbox, path="edit/app.py", old_text="a = 1", new_text="z")
    assert "matches 2 times" in message and "lines 1, 3" in message
    assert "not found" in await call_error(
        client, "edit_file", sandbox=sandbox, path="edit/app.py", old_text="c = 3", new_text="z"
    )
    edited = await call_ok(
        client, "edit_file", sandbox=sandbox, path="edit/app.py", old_text="b = 2", new_text="b = 20"
    )
    assert edited["replacements"] == 1 and edited["first_line"] == 2 and "2|b = 20" in edited["snippet"]
    await call_ok(client, "edit_file", sandbox=sandbox, path="edit/app.py", start_line=3, new_text="c = 3")
    read = await call_ok(client, "read_file", sandbox=sandbox, path="edit/app.py", raw=True)
    assert read["content"] == "a = 1\nb = 20\nc = 3\n"
    assert "either old_text or start_line" in await call_error(
        client, "edit_file", sandbox=sandbox, path="edit/app.py", old_text="a", start_line=1, new_text="x"
    )


async def test_edit_file_accepts_claude_codes_old_string_and_new_string(client: Client, sandbox: str) -> None:
    await call_ok(client, "write_file", sandbox=sandbox, path="edit/cc.py", content="x = 1\ny = 2\n")
    edited = await call_ok(
        client, "edit_file", sandbox=sandbox, path="edit/cc.py", old_string="y = 2", new_string="y = 3"
    )
    assert edited["replacements"] == 1 and edited["first_line"] == 2
    await call_ok(client, "edit_file", sandbox=sandbox, path="edit/cc.py", old_string="x = 1", new_text="x = 0")
    read = await call_ok(client, "read_file", sandbox=sandbox, path="edit/cc.py", raw=True)
    assert read["content"] == "x = 0\ny = 3\n"
    both = await call_error(
        client, "edit_file", sandbox=sandbox, path="edit/cc.py", old_text="x", old_string="x", new_text="z"
    )
    assert "old_text or old_string" in both and "not both" in both
    schema = {t.name: t for t in (await client.list_tools()).tools}["edit_file"].input_schema
    assert "old_text" in schema["properties"] and "old_string" not in schema["properties"]


async def test_edit_keeps_binary_bytes_and_file_mode(client: Client, sandbox: str) -> None:
    blob = b"\xff\xfe\x00KEY=old\x00\x80"
    await call_ok(client, "write_file", sandbox=sandbox, path="edit/blob.bin",
                  content=base64.b64encode(blob).decode(), encoding="base64")
    await call_ok(client, "edit_file", sandbox=sandbox, path="edit/blob.bin", old_text="KEY=old", new_text="KEY=new")
    read = await call_ok(client, "read_file", sandbox=sandbox, path="edit/blob.bin", byte_offset=0)
    assert base64.b64decode(read["content"]) == b"\xff\xfe\x00KEY=new\x00\x80"
    await call_ok(client, "write_file", sandbox=sandbox, path="edit/run.sh", content="#!/bin/sh\necho one\n")
    await call_ok(client, "run_command", sandbox=sandbox, command="chmod 755 edit/run.sh")
    await call_ok(client, "edit_file", sandbox=sandbox, path="edit/run.sh", old_text="one", new_text="two")
    out = await call_ok(client, "run_command", sandbox=sandbox, command="./edit/run.sh && stat -c %a edit/run.sh")
    assert out["stdout"] == "two\n755\n"


async def test_delete_move_and_make_dir(client: Client, sandbox: str) -> None:
    made = await call_ok(client, "make_dir", sandbox=sandbox, path="ops/a/b")
    assert made == {"path": "/workspace/ops/a/b", "created": True}
    assert (await call_ok(client, "make_dir", sandbox=sandbox, path="ops/a/b"))["created"] is False
    await call_ok(client, "write_file", sandbox=sandbox, path="ops/a/b/f.txt", content="x")
    await call_ok(client, "write_file", sandbox=sandbox, path="ops/g.txt", content="y")

    moved = await call_ok(client, "move_path", sandbox=sandbox, source="ops/a/b/f.txt", destination="ops/new/f2.txt")
    assert moved["destination"] == "/workspace/ops/new/f2.txt" and moved["type"] == "file"
    assert "already exists" in await call_error(
        client, "move_path", sandbox=sandbox, source="ops/g.txt", destination="ops/new/f2.txt"
    )
    replaced = await call_ok(
        client, "move_path", sandbox=sandbox, source="ops/g.txt", destination="ops/new/f2.txt", overwrite=True
    )
    assert replaced["replaced"] is True
    assert (await call_ok(client, "read_file", sandbox=sandbox, path="ops/new/f2.txt", raw=True))["content"] == "y"

    assert "recursive=true" in await call_error(client, "delete_path", sandbox=sandbox, path="ops/new")
    assert (await call_ok(client, "delete_path", sandbox=sandbox, path="ops/new/f2.txt"))["type"] == "file"
    assert (await call_ok(client, "delete_path", sandbox=sandbox, path="ops", recursive=True))["type"] == "dir"
    missing = await call_error(client, "delete_path", sandbox=sandbox, path="ops")
    assert "nothing exists" in missing and "missing_ok=true" in missing
    gone = await call_ok(client, "delete_path", sandbox=sandbox, path="ops/a/b", missing_ok=True, recursive=True)
    assert gone == {"path": "/workspace/ops/a/b", "type": "none", "deleted": False}
    for protected in ("/workspace", "/", "/workspace/..", "/tmp/.corral"):
        message = await call_error(client, "delete_path", sandbox=sandbox, path=protected, recursive=True)
        assert "refusing to delete" in message
    assert (await call_ok(client, "run_command", sandbox=sandbox, command="test -d /workspace"))["exit_code"] == 0


async def test_search_and_find(client: Client, sandbox: str) -> None:
    await call_ok(client, "write_file", sandbox=sandbox, path="proj/src/main.py", content="def main():\n    todo()\n")
    await call_ok(client, "write_file", sandbox=sandbox, path="proj/src/util.js", content="// TODO: later\n")
    await call_ok(client, "write_file", sandbox=sandbox, path="proj/node_modules/x/y.js", content="todo\n")
    found = await call_ok(client, "search_files", sandbox=sandbox, pattern="todo", path="proj", ignore_case=True)
    assert [(m["path"], m["line"]) for m in found["matches"]] == [
        ("/workspace/proj/src/main.py", 2),
        ("/workspace/proj/src/util.js", 1),
    ]
    only_py = await call_ok(client, "search_files", sandbox=sandbox, pattern="todo(", literal=True,
                            path="proj", glob="*.py")
    assert [m["text"] for m in only_py["matches"]] == ["    todo()"]
    assert "literal=true" in await call_error(client, "search_files", sandbox=sandbox, pattern="todo(", path="proj")
    files = await call_ok(client, "find_files", sandbox=sandbox, pattern="*.js", path="proj", type="file")
    assert [e["path"] for e in files["entries"]] == ["/workspace/proj/src/util.js"]
    dirs = await call_ok(client, "find_files", sandbox=sandbox, pattern="src", path="proj", type="dir")
    assert [e["path"] for e in dirs["entries"]] == ["/workspace/proj/src"]
    capped = await call_ok(client, "find_files", sandbox=sandbox, pattern="*", path="proj", max_results=1)
    assert capped["truncated"] is True and len(capped["entries"]) == 1


async def test_upload_and_download_are_off_unless_allowed(client: Client, sandbox: str, tmp_path: Path) -> None:
    (tmp_path / "f.txt").write_text("x")
    message = await call_error(client, "upload", sandbox=sandbox, host_path=str(tmp_path / "f.txt"), path="f.txt")
    assert "--allow-host-dir" in message and "CORRAL_HOST_DIRS" in message
    assert "--allow-host-dir" in await call_error(
        client, "download", sandbox=sandbox, path="f.txt", host_path=str(tmp_path / "g.txt")
    )


@pytest.fixture
async def host_client(tmp_path: Path) -> AsyncIterator[tuple[Client, Path, Path]]:
    home, allowed, outside = tmp_path / "home", tmp_path / "allowed", tmp_path / "outside"
    for d in (allowed, outside):
        d.mkdir()
    try:
        async with Client(build_server(Settings(home=home, host_dirs=(allowed,))), raise_exceptions=False) as c:
            yield c, allowed, outside
    finally:
        reap_containers(home)


async def test_upload_and_download_round_trip(host_client: tuple[Client, Path, Path]) -> None:
    client, allowed, outside = host_client
    big = os.urandom(9 * 1024 * 1024 + 123)  # more than two transfer chunks
    (allowed / "in" / "sub").mkdir(parents=True)
    (allowed / "in" / "big.bin").write_bytes(big)
    (allowed / "in" / "sub" / "run.sh").write_text("#!/bin/sh\necho ok\n")
    (allowed / "in" / "sub" / "run.sh").chmod(0o755)
    (allowed / "in" / "secret-link").symlink_to(outside)
    (outside / "secret.txt").write_text("host secret")
    with anyio.fail_after(240):
        sandbox = (await call_ok(client, "create_sandbox"))["id"]
        up = await call_ok(client, "upload", sandbox=sandbox, host_path=str(allowed / "in"), path="up")
        assert up["files"] == 2 and up["bytes"] == len(big) + 18
        assert any("secret-link" in s for s in up["skipped"])
        out = await call_ok(client, "run_command", sandbox=sandbox,
                            command="./up/sub/run.sh && ls up && sha256sum up/big.bin | cut -c1-64")
        import hashlib

        assert out["stdout"] == f"ok\nbig.bin\nsub\n{hashlib.sha256(big).hexdigest()}\n"
        assert "already exists" in await call_error(
            client, "upload", sandbox=sandbox, host_path=str(allowed / "in"), path="up"
        )

        down = await call_ok(client, "download", sandbox=sandbox, path="up", host_path="back")
        assert down["host_path"] == str(allowed / "back") and down["files"] == 2
        assert (allowed / "back" / "big.bin").read_bytes() == big
        assert (allowed / "back" / "sub" / "run.sh").read_text() == "#!/bin/sh\necho ok\n"
        one = await call_ok(client, "download", sandbox=sandbox, path="up/sub/run.sh",
                            host_path=str(allowed / "run.sh"))
        assert one["files"] == 1 and os.access(allowed / "run.sh", os.X_OK)
        assert "already exists" in await call_error(
            client, "download", sandbox=sandbox, path="up/sub/run.sh", host_path=str(allowed / "run.sh")
        )

        # Nothing outside the allowed directory, not even through a symlink inside it.
        link = allowed / "in" / "secret-link"
        for host_path in (str(outside / "x.txt"), str(link / "x.txt"), "../outside/x.txt", str(link)):
            message = await call_error(client, "download", sandbox=sandbox, path="up/sub/run.sh", host_path=host_path)
            assert "outside the host directories the operator allowed" in message
        for host_path in (str(link / "secret.txt"), str(link), str(outside / "secret.txt")):
            message = await call_error(client, "upload", sandbox=sandbox, host_path=host_path, path="s")
            assert "outside the host directories the operator allowed" in message
        assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
        await call_ok(client, "delete_sandbox", sandbox=sandbox)
