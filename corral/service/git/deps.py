"""What the git feature needs: the sandboxes' agents, the engine and spec factory for its helper
containers, the table of hosts credentials may go to, and the operator's settings."""

from __future__ import annotations

from dataclasses import dataclass

from corral.config import Settings
from corral.sandbox_backend.engine import Engine
from corral.sandbox_backend.store import GitRemoteTable
from corral.service.access import SandboxAccess
from corral.service.containers import Containers
from corral.service.network import NetworkService


@dataclass(frozen=True)
class GitDeps:
    sandboxes: SandboxAccess
    engine: Engine
    containers: Containers
    settings: Settings
    remotes: GitRemoteTable
    network: NetworkService
