"""Fixtures of the security tier: each test gets its own data dir, reaped of containers after."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.cleanup import reap_containers


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    reap_containers(tmp_path)
