"""Fixtures for the in-sandbox agent tests: the real agent, run locally as a subprocess."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from corral.sandbox_backend.agent_channel import AgentChannel

from .helpers import agent_env, kill_processes_of, open_channel, stdio_argv


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def agent_dir(tmp_path: Path) -> Iterator[Path]:
    """The agent's state dir (socket, bundles, procs); every process started for it dies after."""
    directory = tmp_path / "agent"
    yield directory
    kill_processes_of(directory)


@pytest.fixture
async def agent(agent_dir: Path) -> AsyncIterator[AgentChannel]:
    """A channel to the agent in serve-stdio mode, with the fake python driver for code contexts."""
    async with open_channel(stdio_argv(), agent_env(agent_dir)) as channel:
        yield channel


@pytest.fixture
def work_dir(tmp_path: Path) -> Path:
    """A scratch directory of its own (tmp_path also holds the agent dir)."""
    directory = tmp_path / "work"
    directory.mkdir()
    return directory
