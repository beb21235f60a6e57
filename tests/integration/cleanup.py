"""The Docker tier's safety net: whatever a test made is removed, also when it fails."""

from __future__ import annotations

import contextlib
import shlex
import subprocess
from pathlib import Path

import docker
import docker.errors

from corral.config import LABEL_NAMESPACE, Settings, default_home
from corral.sandbox_backend.docker.disks import LoopDisks
from corral.service.containers import home_label


def reap_containers(home: Path) -> None:
    """Remove every container, volume (with its disk image and loop device), network, image (forks,
    snapshots) and iptables rule labelled as owned by this data dir."""
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
        for image in client.images.list(filters=label):
            for tag in image.tags:
                client.images.remove(tag, noprune=False)
    finally:
        client.close()
    reap_rules(owner)


def rules_of(owner: str) -> list[str]:
    """This owner's rules and chains, as `iptables -S` / `ip6tables -S` print them."""
    found = []
    for command in ("iptables", "ip6tables"):
        listing = subprocess.run([command, "-w", "-S"], capture_output=True, text=True, timeout=60).stdout
        found += [f"{command} {line}" for line in listing.splitlines() if owner in line]
    return found


def reap_rules(owner: str) -> None:
    for line in rules_of(owner):
        command, *words = shlex.split(line)
        if words[0] == "-A" and f"corral:{owner}" in words:
            subprocess.run([command, "-w", "-D", *words[1:]], capture_output=True, timeout=60)
    for command in ("iptables", "ip6tables"):
        for chain in (f"CORRAL-{owner}", f"CORRAL-IN-{owner}"):
            if subprocess.run([command, "-w", "-F", chain], capture_output=True, timeout=60).returncode == 0:
                subprocess.run([command, "-w", "-X", chain], capture_output=True, timeout=60)
