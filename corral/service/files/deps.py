"""What file operations need: the sandboxes' agents and the operator's limits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from corral.config import ExecPolicy
from corral.service.access import SandboxAccess


@dataclass(frozen=True)
class FileDeps:
    sandboxes: SandboxAccess
    policy: ExecPolicy
    host_dirs: tuple[Path, ...] = ()
