"""Staged payloads: a request names a file the host put in the agent's inbox instead of carrying
its bytes; every failure names the field `staged` (the host then sends the bytes inline)."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from corral.sandbox_backend.agent_channel import AgentChannel, AgentError

from .helpers import agent_env, open_channel, stdio_argv

pytestmark = pytest.mark.anyio


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    directory = tmp_path / "inbox"
    directory.mkdir()
    return directory


@pytest.fixture
async def staging_agent(agent_dir: Path, inbox: Path) -> AsyncIterator[AgentChannel]:
    env = dict(agent_env(agent_dir), CORRAL_AGENT_INBOX=str(inbox))
    async with open_channel(stdio_argv(), env) as channel:
        yield channel


def staged(inbox: Path, data: bytes) -> str:
    name = secrets.token_hex(16)
    (inbox / name).write_bytes(data)
    return name


async def test_a_staged_payload_is_written_like_inline_bytes(
    staging_agent: AgentChannel, inbox: Path, work_dir: Path
) -> None:
    data = os.urandom(3 * 1024 * 1024 + 7)
    target = work_dir / "big.bin"
    written = await staging_agent.request("write_file", {"path": str(target), "staged": staged(inbox, data)})
    assert written == {"size": len(data)} and target.read_bytes() == data


@pytest.mark.parametrize("name", ["../outside", "not-hex-" + "0" * 24, "ab" * 17, 7])
async def test_a_staged_name_that_is_not_a_token_is_refused(
    staging_agent: AgentChannel, inbox: Path, work_dir: Path, name: object
) -> None:
    (inbox.parent / "outside").write_bytes(b"secret")
    with pytest.raises(AgentError) as refused:
        await staging_agent.request("write_file", {"path": str(work_dir / "x"), "staged": name})
    assert (refused.value.type, refused.value.field) == ("bad_request", "staged")
    assert not (work_dir / "x").exists()


async def test_a_missing_or_linked_staged_payload_names_the_field(
    staging_agent: AgentChannel, inbox: Path, work_dir: Path
) -> None:
    missing = secrets.token_hex(16)
    linked = secrets.token_hex(16)
    (work_dir / "elsewhere").write_bytes(b"not the host's")
    (inbox / linked).symlink_to(work_dir / "elsewhere")
    for name in (missing, linked):
        with pytest.raises(AgentError) as refused:
            await staging_agent.request("write_file", {"path": str(work_dir / "x"), "staged": name})
        assert refused.value.field == "staged"
    assert not (work_dir / "x").exists()


async def test_staged_stands_only_for_the_bytes_of_a_request_that_takes_them(
    staging_agent: AgentChannel, inbox: Path, work_dir: Path
) -> None:
    name = staged(inbox, b"data")
    for op, params in (
        ("read_file", {"path": str(work_dir), "staged": name}),
        ("write_file", {"path": str(work_dir / "x"), "bytes": b"inline", "staged": name}),
    ):
        with pytest.raises(AgentError) as refused:
            await staging_agent.request(op, params)
        assert (refused.value.type, refused.value.field) == ("bad_request", "staged")


@pytest.fixture
def outbox(tmp_path: Path) -> Path:
    return tmp_path / "outbox"  # the agent makes it


@pytest.fixture
async def outbox_agent(agent_dir: Path, outbox: Path) -> AsyncIterator[AgentChannel]:
    env = dict(agent_env(agent_dir), CORRAL_AGENT_OUTBOX=str(outbox))
    async with open_channel(stdio_argv(), env) as channel:
        yield channel


async def test_a_big_reply_goes_to_the_named_outbox_file(
    outbox_agent: AgentChannel, outbox: Path, work_dir: Path
) -> None:
    data = os.urandom(1024 * 1024)
    (work_dir / "big.bin").write_bytes(data)
    name = secrets.token_hex(16)
    reply = await outbox_agent.request(
        "read_file", {"path": str(work_dir / "big.bin"), "max_bytes": len(data), "binary": True, "outbox": name}
    )
    assert reply["outbox"] == len(data) and "bytes" not in reply
    assert (outbox / name).read_bytes() == data


@pytest.mark.parametrize("name", ["../escape", "x" * 32, 5])
async def test_small_replies_and_bad_outbox_names_stay_inline(
    outbox_agent: AgentChannel, outbox: Path, work_dir: Path, name: object
) -> None:
    data = os.urandom(1024 * 1024)
    (work_dir / "big.bin").write_bytes(data)
    params = {"path": str(work_dir / "big.bin"), "max_bytes": 100, "binary": True}
    small = await outbox_agent.request("read_file", {**params, "outbox": secrets.token_hex(16)})
    assert small["bytes"] == data[:100] and "outbox" not in small
    big = await outbox_agent.request(
        "read_file", {"path": str(work_dir / "big.bin"), "max_bytes": len(data), "binary": True, "outbox": name}
    )
    assert big["bytes"] == data and "outbox" not in big
    assert not (work_dir.parent / "escape").exists()
