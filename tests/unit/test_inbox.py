"""Big payloads reach the agent through its inbox (service/inbox.py), with the bytes inline as the
fallback whenever the agent cannot read them there."""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from corral.config import Settings
from corral.sandbox_backend.fake import FakeAgentError, FakeEngine
from corral.service import Services, open_services
from corral.service.containers import LABEL_ROLE, LABEL_SANDBOX
from corral.service.inbox import INBOX, STAGE_MIN, stage

BIG = os.urandom(STAGE_MIN + 1)


@pytest.fixture
def engine(tmp_path: Path) -> FakeEngine:
    fake = FakeEngine()
    fake.volume_root = tmp_path / "volumes"
    fake.volume_root.mkdir()
    return fake


@pytest.fixture
async def services(tmp_path: Path, engine: FakeEngine) -> AsyncIterator[Services]:
    async with open_services(Settings(home=tmp_path / "home"), engine=engine) as opened:
        yield opened


def inbox_of(engine: FakeEngine, sandbox_id: str) -> Path:
    assert engine.volume_root is not None
    (name,) = [
        n for n, v in engine.volumes.items() if (v.labels[LABEL_ROLE], v.labels[LABEL_SANDBOX]) == ("agent", sandbox_id)
    ]
    return engine.volume_root / name / INBOX


def test_a_staged_payload_is_a_new_root_file_readable_by_the_sandbox(tmp_path: Path) -> None:
    staged = stage(str(tmp_path), b"payload")
    path = tmp_path / INBOX / staged.name
    assert path.read_bytes() == b"payload" and len(staged.name) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o644 and stat.S_IMODE(path.parent.stat().st_mode) == 0o755
    staged.remove()
    assert not path.exists()


def test_staging_refuses_an_inbox_that_is_a_symlink(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    volume = tmp_path / "volume"
    volume.mkdir()
    (volume / INBOX).symlink_to(elsewhere)
    with pytest.raises(OSError):
        stage(str(volume), b"payload")
    assert list(elsewhere.iterdir()) == []


async def test_a_big_write_goes_through_the_inbox_and_leaves_nothing_there(
    services: Services, engine: FakeEngine
) -> None:
    seen: list[dict[str, Any]] = []

    def write_file(params: dict[str, Any]) -> dict[str, Any]:
        seen.append({"staged": params.get("staged"), "bytes": params.get("bytes")})
        if "staged" in params:
            return {"size": len((inbox_of(engine, rec.id) / params["staged"]).read_bytes())}
        return {"size": len(params["bytes"])}

    engine.agent_ops["write_file"] = write_file
    rec = await services.sandboxes.create()
    written = await services.files.write_file(rec.id, "big.bin", BIG.hex(), encoding="text")
    small = await services.files.write_file(rec.id, "small.txt", "hello")
    assert written.size == 2 * len(BIG) and seen[0]["bytes"] is None and seen[0]["staged"]
    assert small.size == 5 and seen[1]["staged"] is None  # small payloads stay inline
    assert list(inbox_of(engine, rec.id).iterdir()) == []


async def test_an_agent_that_cannot_read_its_inbox_gets_the_bytes_inline(
    services: Services, engine: FakeEngine
) -> None:
    seen: list[str] = []

    def write_file(params: dict[str, Any]) -> dict[str, Any]:
        if "staged" in params:
            seen.append("staged")
            raise FakeAgentError("not_found", "staged payload: No such file or directory", field="staged")
        seen.append("inline")
        return {"size": len(params["bytes"])}

    engine.agent_ops["write_file"] = write_file
    rec = await services.sandboxes.create()
    for _ in range(2):
        written = await services.files.write_file(rec.id, "big.bin", BIG.hex())
        assert written.size == 2 * len(BIG)
    assert seen == ["staged", "inline", "inline"]  # after one miss, this sandbox's payloads go inline
