"""read_file, write_file, list_files, stat and signal against the agent in serve-stdio mode."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import anyio
import pytest

from corral.sandbox_backend.agent_channel import AgentChannel, AgentError

from .helpers import DEADLINE, pid_alive

pytestmark = pytest.mark.anyio

BINARY = bytes(range(256)) * 64


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def agent_error(agent: AgentChannel, op: str, params: dict[str, object]) -> AgentError:
    with pytest.raises(AgentError) as excinfo:
        await agent.request(op, params)
    return excinfo.value


async def test_binary_round_trip(agent: AgentChannel, work_dir: Path) -> None:
    path = work_dir / "deep" / "er" / "blob.bin"
    written = await agent.request("write_file", {"path": str(path), "data_b64": b64(BINARY)})
    assert written == {"size": len(BINARY)}
    assert path.read_bytes() == BINARY
    read = await agent.request("read_file", {"path": str(path)})
    assert base64.b64decode(read["data_b64"]) == BINARY
    assert read["size"] == len(BINARY) and read["truncated"] is False


async def test_read_with_offset_and_limit(agent: AgentChannel, work_dir: Path) -> None:
    path = work_dir / "digits"
    path.write_bytes(b"0123456789")
    read = await agent.request("read_file", {"path": str(path), "offset": 2, "max_bytes": 5})
    assert base64.b64decode(read["data_b64"]) == b"23456"
    assert read == {**read, "size": 10, "truncated": True}
    tail = await agent.request("read_file", {"path": str(path), "offset": 7, "max_bytes": 5})
    assert base64.b64decode(tail["data_b64"]) == b"789" and tail["truncated"] is False


async def test_read_errors(agent: AgentChannel, work_dir: Path) -> None:
    missing = await agent_error(agent, "read_file", {"path": str(work_dir / "nope")})
    assert missing.type == "not_found"
    directory = await agent_error(agent, "read_file", {"path": str(work_dir)})
    assert directory.type == "is_a_directory"
    fifo = work_dir / "fifo"
    os.mkfifo(fifo)
    special = await agent_error(agent, "read_file", {"path": str(fifo)})  # must not hang
    assert special.type == "bad_request" and "not a regular file" in special.message


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads everything")
async def test_read_permission_error(agent: AgentChannel, work_dir: Path) -> None:
    secret = work_dir / "secret"
    secret.write_text("x")
    secret.chmod(0)
    assert (await agent_error(agent, "read_file", {"path": str(secret)})).type == "permission"


async def test_write_is_atomic_and_keeps_the_mode(agent: AgentChannel, work_dir: Path) -> None:
    path = work_dir / "script.sh"
    path.write_text("old")
    path.chmod(0o751)
    await agent.request("write_file", {"path": str(path), "data_b64": b64(b"new contents")})
    assert path.read_bytes() == b"new contents"
    assert stat.S_IMODE(path.stat().st_mode) == 0o751
    assert os.listdir(work_dir) == ["script.sh"]  # no temp file left
    await agent.request("write_file", {"path": str(path), "data_b64": b64(b"x"), "mode": 0o600})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_write_through_a_symlink_replaces_the_target(agent: AgentChannel, work_dir: Path) -> None:
    target = work_dir / "target.txt"
    target.write_text("old")
    link = work_dir / "link.txt"
    link.symlink_to(target)
    await agent.request("write_file", {"path": str(link), "data_b64": b64(b"via link")})
    assert link.is_symlink() and target.read_text() == "via link"


async def test_append(agent: AgentChannel, work_dir: Path) -> None:
    path = work_dir / "log.txt"
    for part in (b"one\n", b"two\n"):
        result = await agent.request("write_file", {"path": str(path), "data_b64": b64(part), "append": True})
    assert path.read_bytes() == b"one\ntwo\n" and result["size"] == 8


async def test_write_errors(agent: AgentChannel, work_dir: Path) -> None:
    no_parent = await agent_error(
        agent, "write_file", {"path": str(work_dir / "a" / "b"), "data_b64": "", "mkdirs": False}
    )
    assert no_parent.type == "not_found"
    (work_dir / "file").write_text("x")
    under_file = await agent_error(
        agent, "write_file", {"path": str(work_dir / "file" / "x"), "data_b64": ""}
    )
    assert under_file.type == "not_a_directory"
    onto_dir = await agent_error(agent, "write_file", {"path": str(work_dir), "data_b64": ""})
    assert onto_dir.type == "is_a_directory"


async def test_list_files_depth_first_sorted_with_hidden(agent: AgentChannel, work_dir: Path) -> None:
    (work_dir / "b" / "inner").mkdir(parents=True)
    (work_dir / "b" / "inner" / "deep.txt").write_text("deep")
    (work_dir / "b" / "z.txt").write_text("zz")
    (work_dir / "a.txt").write_text("a")
    (work_dir / ".hidden").write_text("")
    (work_dir / "link").symlink_to(work_dir / "b")
    listing = await agent.request("list_files", {"path": str(work_dir), "depth": 2})
    assert listing["truncated"] is False
    assert [(e["path"], e["type"]) for e in listing["entries"]] == [
        (".hidden", "file"),
        ("a.txt", "file"),
        ("b", "dir"),
        ("b/inner", "dir"),
        ("b/z.txt", "file"),
        ("link", "symlink"),
    ]
    sizes = {e["path"]: e["size"] for e in listing["entries"]}
    assert sizes["b/z.txt"] == 2
    deep = await agent.request("list_files", {"path": str(work_dir), "depth": 3})
    assert "b/inner/deep.txt" in [e["path"] for e in deep["entries"]]


async def test_list_files_truncates(agent: AgentChannel, work_dir: Path) -> None:
    for i in range(10):
        (work_dir / f"f{i}").write_text("")
    listing = await agent.request("list_files", {"path": str(work_dir), "max_entries": 4})
    assert [e["path"] for e in listing["entries"]] == ["f0", "f1", "f2", "f3"]
    assert listing["truncated"] is True
    exact = await agent.request("list_files", {"path": str(work_dir), "max_entries": 10})
    assert exact["truncated"] is False


async def test_list_files_errors(agent: AgentChannel, work_dir: Path) -> None:
    assert (await agent_error(agent, "list_files", {"path": str(work_dir / "nope")})).type == "not_found"
    (work_dir / "file").write_text("")
    not_dir = await agent_error(agent, "list_files", {"path": str(work_dir / "file")})
    assert not_dir.type == "not_a_directory"


async def test_stat(agent: AgentChannel, work_dir: Path) -> None:
    path = work_dir / "f"
    path.write_text("hello")
    path.chmod(0o640)
    info = await agent.request("stat", {"path": str(path)})
    assert info["exists"] is True and info["type"] == "file" and info["size"] == 5 and info["mode"] == 0o640
    missing = await agent.request("stat", {"path": str(work_dir / "missing" / "x")})
    assert missing["exists"] is False
    (work_dir / "l").symlink_to(path)
    link = await agent.request("stat", {"path": str(work_dir / "l")})
    assert link["type"] == "symlink" and link["link_target"] == str(path) and link["size"] == 5


async def test_signal(agent: AgentChannel) -> None:
    async with await anyio.open_process(["sleep", "60"]) as sleeper:
        await agent.request("signal", {"pid": sleeper.pid, "signal": "TERM"})
        with anyio.fail_after(DEADLINE):
            assert await sleeper.wait() == -15
    assert not pid_alive(sleeper.pid)
    gone = await agent_error(agent, "signal", {"pid": sleeper.pid, "signal": 15})
    assert gone.type == "not_found"


async def test_largest_payloads_fit_in_frames(agent: AgentChannel, work_dir: Path) -> None:
    data = os.urandom(8 * 1024 * 1024)
    path = work_dir / "big.bin"
    await agent.request("write_file", {"path": str(path), "data_b64": b64(data)})
    read = await agent.request("read_file", {"path": str(path), "max_bytes": len(data)})
    assert base64.b64decode(read["data_b64"]) == data and read["truncated"] is False
