"""prepare_checkpoint (relays end so a checkpoint can be restored) and usage, on the real agent."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from corral.agent.ops_lifecycle import end_host_fd_holders, host_fds
from corral.sandbox_backend.agent_channel import AgentChannel, AgentError

from .helpers import agent_env, agent_process, open_channel, pid_alive, process_stream, relay_argv

pytestmark = pytest.mark.anyio


async def test_prepare_checkpoint_ends_every_relay_but_keeps_the_daemon_and_its_state(agent_dir: Path) -> None:
    env = agent_env(agent_dir)
    async with open_channel(relay_argv(), env) as other:
        daemon = (await other.request("hello"))["pid"]
        await other.request("code_run", {"language": "python", "context": "c", "code": "x = 41", "timeout": 20})
        async with agent_process(relay_argv(), env) as relay:
            async with AgentChannel(process_stream(relay)) as channel:
                assert await channel.request("prepare_checkpoint") == {"killed": 0}
                with anyio.fail_after(20):
                    await channel.wait_closed()  # the reply came first, then the stream ended
                    await relay.wait()  # and the relay process is gone, not just its stream
            with anyio.fail_after(20):
                await other.wait_closed()  # the other connection's relay was told too
    assert pid_alive(daemon)
    async with open_channel(relay_argv(), env) as channel:
        assert (await channel.request("hello"))["pid"] == daemon
        run = await channel.request("code_run", {"language": "python", "context": "c", "code": "x + 1", "timeout": 20})
    assert run["value"] == "42" and run["state_lost"] is False


async def test_prepare_checkpoint_is_refused_outside_the_daemon(agent: AgentChannel) -> None:
    with pytest.raises(AgentError) as info:
        await agent.request("prepare_checkpoint")
    assert info.value.type == "bad_request"


def test_only_processes_with_host_fds_of_their_own_are_ended() -> None:
    # Outside gVisor no descriptor is a `host:[N]` one: nothing qualifies, nothing is killed.
    assert host_fds(1) in (None, set())
    assert end_host_fd_holders(set()) == []


async def test_usage_reports_processes_and_the_workspace_disk(agent: AgentChannel) -> None:
    usage = await agent.request("usage")
    assert usage["processes"] >= 1
    # /workspace exists only in a sandbox; elsewhere the disk figures are null.
    if await anyio.Path("/workspace").is_dir():
        assert usage["disk_total"] >= usage["disk_used"] >= 0
    else:
        assert usage["disk_total"] is None
