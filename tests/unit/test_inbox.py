"""Big payloads reach the agent through its inbox (service/inbox.py), with the bytes inline as the
fallback whenever the agent cannot read them there."""

from __future__ import annotations

import base64
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
from corral.service.inbox import INBOX, OUTBOX, STAGE_MIN, collect, stage

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


def outbox_in(volume: Path) -> Path:
    directory = volume.joinpath(*OUTBOX)
    directory.mkdir(parents=True)
    return directory


def test_a_collected_reply_is_read_and_removed(tmp_path: Path) -> None:
    (outbox_in(tmp_path) / "a").write_bytes(b"payload")
    assert collect(str(tmp_path), "a", 7, 100) == b"payload"
    assert not (tmp_path.joinpath(*OUTBOX) / "a").exists()


def test_collecting_refuses_what_the_sandbox_could_have_put_in_the_way(tmp_path: Path) -> None:
    secret = tmp_path / "host-secret"
    secret.write_bytes(b"secret!")
    # a symlinked directory on the way, a symlink or a FIFO in place of the file, a wrong or too big size
    linked = tmp_path / "linked"
    (linked / OUTBOX[0]).mkdir(parents=True)
    (linked / OUTBOX[0] / OUTBOX[1]).symlink_to(tmp_path)
    box = outbox_in(tmp_path / "volume")
    (box / "link").symlink_to(secret)
    os.mkfifo(box / "fifo")
    (box / "short").write_bytes(b"abc")
    cases = [(linked, "host-secret", 7, 100), (box.parent.parent, "link", 7, 100), (box.parent.parent, "fifo", 0, 100),
             (box.parent.parent, "short", 4, 100), (box.parent.parent, "short", 3, 2)]
    for volume, name, size, limit in cases:
        with pytest.raises((OSError, ValueError)):
            collect(str(volume), name, size, limit)
    assert secret.read_bytes() == b"secret!"


async def test_a_big_read_comes_back_through_the_outbox_or_else_inline(services: Services, engine: FakeEngine) -> None:
    data = os.urandom(STAGE_MIN + 1)
    seen: list[str] = []
    honest = [True]

    def read_file(params: dict[str, Any]) -> dict[str, Any]:
        if "outbox" not in params:
            seen.append("inline")
            return {"bytes": data, "size": len(data)}
        seen.append("outbox")
        if honest[0]:
            box = next(p for p in engine.volume_root.iterdir() if "agent" not in p.name)  # type: ignore[union-attr]
            outbox_in(box) if not box.joinpath(*OUTBOX).exists() else None
            box.joinpath(*OUTBOX, params["outbox"]).write_bytes(data)
        return {"outbox": len(data), "size": len(data)}  # a dishonest agent says so and leaves nothing

    engine.agent_ops["read_file"] = read_file
    rec = await services.sandboxes.create()
    for _ in range(2):
        read, _ = await services.files.read_file(rec.id, "big.bin", byte_offset=0, byte_count=len(data))
        assert read.content is not None and base64.b64decode(read.content) == data
    honest[0] = False
    for _ in range(2):
        read, _ = await services.files.read_file(rec.id, "big.bin", byte_offset=0, byte_count=len(data))
        assert read.content is not None and base64.b64decode(read.content) == data
    assert seen == ["outbox", "outbox", "outbox", "inline", "inline"]  # one failure: inline from then on
