"""The one place container specs and labels are made: sandboxes and the helpers that serve them.

Every container Corral makes carries the namespace label, the owner (which data dir made it, so
two servers on two data dirs never reap each other's) and the instance (which server process), in
the spirit of testcontainers' reaper labels; `role` tells sandboxes from helpers.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping

from corral.config import LABEL_NAMESPACE, SANDBOX_USER, WORKDIR, Settings
from corral.sandbox_backend.engine import ContainerSpec
from corral.sandbox_backend.store import SandboxRecord

LABEL_MANAGED = f"{LABEL_NAMESPACE}.managed"
LABEL_SANDBOX = f"{LABEL_NAMESPACE}.sandbox"
LABEL_OWNER = f"{LABEL_NAMESPACE}.owner"
LABEL_INSTANCE = f"{LABEL_NAMESPACE}.instance"
LABEL_ROLE = f"{LABEL_NAMESPACE}.role"
LABEL_HELPER_FOR = f"{LABEL_NAMESPACE}.helper-for"

SANDBOX_ENV = {"HOME": WORKDIR, "LANG": "C.UTF-8", "MPLBACKEND": "Agg"}


def home_label(settings: Settings) -> str:
    """Identifies which Corral data dir owns a container."""
    return hashlib.sha256(str(settings.home.resolve()).encode()).hexdigest()[:12]


class Containers:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.owner = home_label(settings)

    @property
    def owner_filter(self) -> str:
        return f"{LABEL_OWNER}={self.owner}"

    def _labels(self) -> dict[str, str]:
        return {
            LABEL_MANAGED: "true",
            LABEL_OWNER: self.owner,
            LABEL_INSTANCE: self.settings.instance_id,
        }

    def network_labels(self, role: str) -> dict[str, str]:
        return {**self._labels(), LABEL_ROLE: role}

    def sandbox_labels(self, sandbox_id: str) -> dict[str, str]:
        return {**self._labels(), LABEL_SANDBOX: sandbox_id, LABEL_ROLE: "sandbox"}

    def sandbox_spec(self, rec: SandboxRecord) -> ContainerSpec:
        return ContainerSpec(
            name=f"corral-{rec.id}",
            image=rec.image,
            runtime=rec.runtime,
            labels=self.sandbox_labels(rec.id),
            memory_bytes=rec.memory_bytes,
            nano_cpus=int(rec.cpus * 1e9),
            pids_limit=rec.pids_limit,
            user=SANDBOX_USER,
            workdir=WORKDIR,
            env=SANDBOX_ENV,
        )

    def helper_spec(
        self,
        rec: SandboxRecord,
        *,
        role: str,
        runtime: str,
        network: str | None,
        env: Mapping[str, str],
        workdir: str = "/tmp",
    ) -> ContainerSpec:
        """A short-lived container of the sandbox's image and limits that works for it (e.g. a git
        fetch with network). It does not carry the sandbox label: reconcile maps that label to the
        sandbox's own container."""
        labels = {**self._labels(), LABEL_ROLE: role, LABEL_HELPER_FOR: rec.id}
        return ContainerSpec(
            name=f"corral-{role}-{rec.id}-{secrets.token_hex(3)}",
            image=rec.image,
            runtime=runtime,
            labels=labels,
            memory_bytes=rec.memory_bytes,
            nano_cpus=int(rec.cpus * 1e9),
            pids_limit=rec.pids_limit,
            user=SANDBOX_USER,
            workdir=workdir,
            env=dict(env),
            network=network,
            hostname=f"corral-{role}",
        )
