"""Shared fixtures. Tests run against the real Docker engine with the real runsc runtime.

One in-process MCP client session and one sandbox are shared by every test that does not need a
fresh one; each test that makes its own sandboxes deletes them. At the end of the session every
container carrying this run's owner label is removed, so a failing test leaves nothing behind.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import docker
import pytest
from mcp import Client

from corral.config import LABEL_NAMESPACE, Settings
from corral.server import build_server
from corral.service.sandboxes import home_label

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Every coroutine test runs on anyio's asyncio runner, sharing the session event loop.
    for item in items:
        if isinstance(item, pytest.Function) and item.get_closest_marker("anyio") is None:
            if getattr(item.function, "__code__", None) and item.function.__code__.co_flags & 0x80:
                item.add_marker(pytest.mark.anyio)


@pytest.fixture(scope="session")
def corral_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("corral-home")
    yield home
    reap_containers(home)


def reap_containers(home: Path) -> None:
    """Remove every container labelled as owned by this data dir (the suite's safety net)."""
    owner = home_label(Settings(home=home))
    client = docker.from_env()
    try:
        for container in client.containers.list(all=True, filters={"label": f"{LABEL_NAMESPACE}.owner={owner}"}):
            container.remove(force=True, v=True)
    finally:
        client.close()


@pytest.fixture(scope="session", autouse=True)
def remove_idle_corral_networks() -> Iterator[None]:
    """Corral's egress network (made on demand for git helpers) goes too, once nothing uses it."""
    yield
    client = docker.from_env()
    try:
        for network in client.networks.list(filters={"label": f"{LABEL_NAMESPACE}.managed=true"}):
            network.reload()
            if not network.containers:
                network.remove()
    finally:
        client.close()


@pytest.fixture(scope="session")
def settings(corral_home: Path) -> Settings:
    # The test git server listens on the gateway of a Docker network the test creates, inside
    # Docker's private pool; production refuses private destinations unless allowed like this.
    return Settings(home=corral_home, git_allow_private=("172.16.0.0/12", "192.168.0.0/16"))


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


def corral_env(home: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "CORRAL_HOME": str(home), **extra}
    env.pop("CORRAL_TOKEN", None)
    return env


def corral_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "corral", *args]


def run_cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(corral_cmd(*args), env=corral_env(home), capture_output=True, text=True, timeout=120)
