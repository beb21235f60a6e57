"""Fixtures of the Docker tier: the real engine, the real runsc runtime, real MCP sessions.

One in-process MCP client session and one sandbox are shared by every test that does not need a
fresh one; each test that makes its own sandboxes deletes them. At the end every container
carrying a test data dir's owner label is removed, so a failing test leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest
from mcp import Client

from corral.config import NetworkSettings, Settings
from corral.server import build_server
from tests.integration.cleanup import reap_containers
from tests.integration.git_server import git_server

__all__ = ["git_server"]  # a fixture for every test of this tier


@pytest.fixture(scope="session")
def corral_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("corral-home")
    yield home
    reap_containers(home)


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    """A data dir of the test's own (for tests that run their own servers)."""
    yield tmp_path
    reap_containers(tmp_path)


@pytest.fixture(scope="session")
def settings(corral_home: Path) -> Settings:
    # The test git server listens on the gateway of a Docker network the test creates, inside
    # Docker's private pool; production refuses private destinations unless allowed like this.
    return Settings(home=corral_home, network=NetworkSettings(allow_private=("172.16.0.0/12", "192.168.0.0/16")))


@pytest.fixture(scope="session")
async def client(settings: Settings) -> AsyncIterator[Client]:
    async with Client(build_server(settings), raise_exceptions=False) as c:
        yield c


@pytest.fixture(scope="session")
async def sandbox(client: Client) -> AsyncIterator[str]:
    """One sandbox shared by tests that only need *a* sandbox (they must not break it)."""
    result = await client.call_tool("create_sandbox", {"name": "shared"})
    assert not result.is_error, result.content
    sandbox_id = result.structured_content["id"]
    yield sandbox_id
    with anyio.CancelScope(shield=True):
        await client.call_tool("delete_sandbox", {"sandbox": sandbox_id})
