"""The Docker tier's safety net: whatever a test made is removed, also when it fails."""

from __future__ import annotations

from pathlib import Path

import docker

from corral.config import LABEL_NAMESPACE, Settings
from corral.service.containers import home_label


def reap_containers(home: Path) -> None:
    """Remove every container, then every network and image (forks, snapshots), labelled as owned
    by this data dir."""
    owner = home_label(Settings(home=home))
    label = {"label": f"{LABEL_NAMESPACE}.owner={owner}"}
    client = docker.from_env()
    try:
        for container in client.containers.list(all=True, filters=label):
            container.remove(force=True, v=True)
        for network in client.networks.list(filters=label):
            network.remove()
        for image in client.images.list(filters=label):
            for tag in image.tags:
                client.images.remove(tag, noprune=False)
    finally:
        client.close()
