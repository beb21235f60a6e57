"""The README's promises that need the real engine: doctor on a ready host, the agent-loop example."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO, corral_cmd, corral_env


def test_doctor_reports_a_ready_host() -> None:
    proc = subprocess.run(corral_cmd("doctor", "--json"), capture_output=True, text=True, timeout=120)
    report = json.loads(proc.stdout)
    assert report["ok"] is True and proc.returncode == 0, report


def test_agent_loop_example_fixes_its_bug_and_succeeds(home: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "examples" / "agent_loop.py")], env=corral_env(home),
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "attempt 1: error NameError" in proc.stdout
    assert "attempt 2: value 328" in proc.stdout
