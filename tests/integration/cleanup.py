"""The Docker tier's safety net: whatever a test made is removed, also when it fails."""

from __future__ import annotations

from pathlib import Path

import docker

from corral.config import LABEL_NAMESPACE, Settings
from corral.service.containers import home_label


def reap_containers(home: Path) -> None:
    """Remove every container labelled as owned by this data dir."""
    owner = home_label(Settings(home=home))
    client = docker.from_env()
    try:
        for container in client.containers.list(all=True, filters={"label": f"{LABEL_NAMESPACE}.owner={owner}"}):
            container.remove(force=True, v=True)
    finally:
        client.close()


def remove_idle_corral_networks() -> None:
    """Networks Corral made on demand (the git helpers' egress network) go once nothing uses them."""
    client = docker.from_env()
    try:
        for network in client.networks.list(filters={"label": f"{LABEL_NAMESPACE}.managed=true"}):
            network.reload()
            if not network.containers:
                network.remove()
    finally:
        client.close()
