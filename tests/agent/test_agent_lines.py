"""read_lines (line ranges of files of any size), stat summaries and binary frames, against the
agent in serve-stdio mode."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from corral.sandbox_backend.agent_channel import AgentChannel, AgentError

pytestmark = pytest.mark.anyio

MiB = 1024 * 1024


def numbered_file(path: Path, lines: int, newline_at_end: bool = True) -> None:
    body = "".join(f"line {n}\n" for n in range(1, lines + 1))
    path.write_text(body if newline_at_end else body[:-1])


async def lines(agent: AgentChannel, path: Path, **params: object) -> dict[str, Any]:
    return await agent.request("read_lines", {"path": str(path), **params})


async def test_a_range_far_into_a_file_larger_than_a_chunk(agent: AgentChannel, work_dir: Path) -> None:
    path = work_dir / "big.txt"
    numbered_file(path, 300_000)  # ~3.4 MiB: several 1 MiB chunks, lines cross chunk borders
    reply = await lines(agent, path, start_line=250_000, end_line=250_002)
    assert reply["bytes"] == b"line 250000\nline 250001\nline 250002\n"
    assert (reply["first_line"], reply["last_line"], reply["total_lines"]) == (250_000, 250_002, 300_000)
    assert reply["truncated"] is False and reply["binary"] is False
    last = await lines(agent, path, start_line=300_000)
    assert last["bytes"] == b"line 300000\n" and last["truncated"] is False
    past = await lines(agent, path, start_line=300_001)
    assert past["bytes"] == b"" and past["last_line"] is None and past["total_lines"] == 300_000


async def test_negative_lines_count_from_the_end(agent: AgentChannel, work_dir: Path) -> None:
    path = work_dir / "tail.txt"
    numbered_file(path, 1000, newline_at_end=False)
    reply = await lines(agent, path, start_line=-2)
    assert reply["bytes"] == b"line 999\nline 1000"
    assert (reply["first_line"], reply["last_line"], reply["total_lines"]) == (999, 1000, 1000)
    middle = await lines(agent, path, start_line=-10, end_line=-9)
    assert middle["bytes"] == b"line 991\nline 992\n"


async def test_caps_stop_at_a_whole_line(agent: AgentChannel, work_dir: Path) -> None:
    path = work_dir / "caps.txt"
    numbered_file(path, 100)
    by_lines = await lines(agent, path, max_lines=10)
    assert by_lines["bytes"].count(b"\n") == 10 and by_lines["last_line"] == 10 and by_lines["truncated"] is True
    by_bytes = await lines(agent, path, max_bytes=20)  # "line 1\n" .. : 7 bytes each for 1-9
    assert by_bytes["bytes"] == b"line 1\nline 2\n" and by_bytes["last_line"] == 2 and by_bytes["truncated"]
    long_line = work_dir / "long.txt"
    long_line.write_bytes(b"x" * 5000 + b"\nshort\n")
    cut = await lines(agent, long_line, max_bytes=1000)
    assert cut["bytes"] == b"x" * 1000 and cut["line_cut"] is True and cut["last_line"] == 1


async def test_binary_files_are_reported_not_read(agent: AgentChannel, work_dir: Path) -> None:
    path = work_dir / "blob.bin"
    data = b"\x7fELF" + bytes(range(256)) * 40
    path.write_bytes(data)
    reply = await lines(agent, path)
    assert reply["binary"] is True and reply["size"] == len(data) and reply["bytes"] == data[:4096]
    latin1 = work_dir / "latin1.txt"
    latin1.write_bytes("caf\xe9\n".encode("latin-1"))
    assert (await lines(agent, latin1))["binary"] is True


async def test_bad_line_numbers(agent: AgentChannel, work_dir: Path) -> None:
    path = work_dir / "x.txt"
    numbered_file(path, 3)
    for params in ({"start_line": 0}, {"start_line": 3, "end_line": 2}, {"start_line": "1"}):
        with pytest.raises(AgentError) as excinfo:
            await lines(agent, path, **params)
        assert excinfo.value.type == "bad_request"


async def test_stat_summarises_with_owner_hash_and_head(agent: AgentChannel, work_dir: Path) -> None:
    path = work_dir / "data.bin"
    data = bytes(range(256)) * 8192  # 2 MiB
    path.write_bytes(data)
    path.chmod(0o640)
    (work_dir / "link").symlink_to(path)
    info = await agent.request("stat", {"path": str(path), "sha256": True, "head": 16})
    assert info["sha256"] == hashlib.sha256(data).hexdigest() and info["bytes"] == data[:16]
    assert info["mode"] == 0o640 and info["size"] == len(data) and isinstance(info["owner"], str)
    link = await agent.request("stat", {"path": str(work_dir / "link")})
    assert link["type"] == "symlink" and link["link_target"] == str(path) and link["target_type"] == "file"


async def test_binary_frames_carry_raw_bytes_both_ways(agent: AgentChannel, work_dir: Path) -> None:
    path = work_dir / "raw.bin"
    data = bytes(range(256)) * (4 * 4096)  # 4 MiB, every byte value
    assert await agent.request("write_file", {"path": str(path), "bytes": data}) == {"size": len(data)}
    assert path.read_bytes() == data
    read = await agent.request("read_file", {"path": str(path), "max_bytes": 8 * MiB, "binary": True})
    assert read["bytes"] == data and "data_b64" not in read
    with pytest.raises(AgentError) as excinfo:
        await agent.request("write_file", {"path": str(path), "bytes": data, "data_b64": "AAAA"})
    assert excinfo.value.type == "bad_request" and "not both" in excinfo.value.message
