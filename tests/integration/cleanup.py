"""The Docker tier's safety net: whatever a test made is removed, also when it fails."""

from __future__ import annotations

import contextlib
from pathlib import Path

import docker
import docker.errors

from corral.config import LABEL_NAMESPACE, Settings, default_home
from corral.sandbox_backend.docker.disks import LoopDisks
from corral.service.containers import home_label


def reap_containers(home: Path) -> None:
    """Remove every container, volume (with its disk image and loop device) and network labelled
    as owned by this data dir."""
    owner = home_label(Settings(home=home))
    label = {"label": f"{LABEL_NAMESPACE}.owner={owner}"}
    client = docker.from_env()
    try:
        for container in client.containers.list(all=True, filters=label):
            container.remove(force=True, v=True)
        names = {v.name for v in client.volumes.list(filters=label)}
        for name in names:
            with contextlib.suppress(docker.errors.NotFound):
                client.volumes.get(name).remove(force=True)
        own = LoopDisks(home / "disks")
        for name in own.names():  # this data dir's images, whatever became of their volumes
            own.remove(name)
        shared = LoopDisks(default_home() / "disks")  # engines made without a data dir use the default one
        for name in set(shared.names()) & names:
            shared.remove(name)
        for network in client.networks.list(filters=label):
            network.remove()
    finally:
        client.close()
