"""`corral doctor` on broken set-ups, simulated with the FakeEngine (the real daemon is never
touched): every failed check names its fix, and the exit status says whether Corral can run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from corral.cli.doctor import report
from corral.config import Settings
from corral.sandbox_backend.fake import FakeEngine
from corral.service.diagnostics import Check, Doctor


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


async def test_a_healthy_setup_passes_every_check_and_proves_gvisor(tmp_path: Path) -> None:
    engine = FakeEngine()
    checks = by_name(await Doctor(Settings(home=tmp_path), engine).run())
    assert all(c.ok for c in checks.values() if c.required), checks
    assert "4.4.0" in checks["gvisor corral-runsc"].detail
    assert engine.containers == {}  # the probe containers are removed


async def test_an_unregistered_runtime_fails_and_names_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checks = await Doctor(Settings(home=tmp_path), FakeEngine(runtimes=("runc",))).run()
    failed = by_name(checks)["runtime corral-runsc"]
    assert not failed.ok and "does not know the runtime 'corral-runsc'" in failed.detail
    assert failed.fix is not None and "scripts/setup-host.sh" in failed.fix and "daemon.json" in failed.fix
    assert "gvisor corral-runsc" not in by_name(checks)  # nothing to probe

    assert report(checks, as_json=False) == 1
    human = capsys.readouterr().out
    assert "FAIL runtime corral-runsc" in human and "fix: run scripts/setup-host.sh" in human and "not ready" in human

    assert report(checks, as_json=True) == 1
    document = json.loads(capsys.readouterr().out)
    assert document["ok"] is False
    assert any(c["name"] == "runtime corral-runsc" and "setup-host.sh" in c["fix"] for c in document["checks"])


async def test_a_runtime_that_is_not_gvisor_is_caught_by_its_kernel(tmp_path: Path) -> None:
    checks = by_name(await Doctor(Settings(home=tmp_path), FakeEngine(), runtimes=("runc",)).run())
    probe = checks["gvisor runc"]
    assert not probe.ok and "not gVisor" in probe.detail and probe.fix


async def test_docker_down_and_a_missing_image_say_what_to_do(tmp_path: Path) -> None:
    engine = FakeEngine(images=())
    missing = by_name(await Doctor(Settings(home=tmp_path), engine).run())["image"]
    assert not missing.ok and missing.fix == "corral image build"
    engine.reachable = False
    down = by_name(await Doctor(Settings(home=tmp_path), engine).run())["docker"]
    assert not down.ok and down.fix is not None and "DOCKER_HOST" in down.fix


async def test_a_database_others_can_read_fails_and_an_open_data_dir_warns(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o755)
    db = home / "corral.db"
    db.write_bytes(b"")
    db.chmod(0o644)
    check = by_name(await Doctor(Settings(home=home), FakeEngine()).run())["data dir"]
    assert not check.ok and check.required and f"{db} is 644" in check.detail
    assert check.fix == f"chmod 700 {home} && chmod 600 {db}*"
    db.chmod(0o600)
    check = by_name(await Doctor(Settings(home=home), FakeEngine()).run())["data dir"]
    assert not check.ok and not check.required and "755" in check.detail


def test_hostile_text_in_the_audit_is_shown_as_is_not_read_as_markup() -> None:
    from rich.console import Console

    from corral.cli.audit import entry_table
    from corral.sandbox_backend.store import AuditEntry

    hostile = "command=echo [/oops] [bold red]fake[/] [link=http://x]y[/link]"
    console = Console(record=True, width=400)
    console.print(entry_table([AuditEntry(0.0, "run_command", "sb-1", "error", "[/x]", 1.0, "t", hostile)]))
    assert hostile in console.export_text()
