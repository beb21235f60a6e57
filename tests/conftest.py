"""Shared test configuration: two tiers.

- Unit tier (`tests/unit`, `tests/agent`, `tests/drivers`): no Docker. The service runs against the
  in-memory FakeEngine, the agent and its drivers run as local processes. `pytest -m "not docker"`
  runs it, also on a machine where Docker is unreachable.
- Docker tier (`tests/integration`, `tests/security`): the real Docker engine with the real runsc
  runtime, through real MCP clients. Every test there is marked `docker` automatically.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

DOCKER_TIERS = ("integration", "security")
TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> None:
    # Every coroutine test runs on anyio's asyncio runner; marked before anyio's own hook looks.
    if isinstance(collector, pytest.Module | pytest.Class) and inspect.iscoroutinefunction(obj):
        if collector.istestfunction(obj, name):
            pytest.mark.anyio(obj)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tier = Path(str(item.fspath)).resolve().relative_to(TESTS).parts[0]
        if tier in DOCKER_TIERS:
            item.add_marker(pytest.mark.docker)
