"""Checkpoints, commits, images and stats: the blocking Docker calls behind the lifecycle operations.

The docker SDK has no checkpoint API, so these call the Engine API endpoints through its low-level
client (`POST /containers/{id}/checkpoints`, `POST /containers/{id}/start?checkpoint=`). Docker
20.10 refuses `--checkpoint-dir`, so a checkpoint reaches another container (fork with memory) by
a copy inside Docker's own directory: that needs root on the Docker host, and is refused otherwise.
Every function runs in a worker thread under `map_docker_errors`.

runsc 20221219 leaves every checkpointed sandbox paused instead of stopped ("invalid state
transition: paused => stopped", the same bug that makes `--leave-running` panic): its memory stays
held, and once a container has been restored, the next start of it fails with "id already in
use" (seen here: checkpoint, restore, checkpoint, then neither a restore nor a plain start works).
So after each checkpoint the runtime's state of the container is removed with
`runsc --root <Docker's runtime root> delete --force` (it panics on the same transition, but the
sandbox is gone after it). That also needs root next to the engine: without it no checkpoint is
taken at all, rather than one that would leave the sandbox unstartable.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from datetime import datetime
from pathlib import Path

import docker
import docker.errors

from corral.errors import CheckpointUnavailable
from corral.sandbox_backend.docker.errors import explain
from corral.sandbox_backend.engine import ImageInfo

CHECKPOINT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
CONTAINER_ID = re.compile(r"^[0-9a-f]{64}$")
# Where Docker 20.10 keeps the state of the runc-shim runtimes (runsc included) of its namespace.
RUNTIME_ROOT = Path("/var/run/docker/runtime-runc/moby")


def _check_name(name: str) -> str:
    if not CHECKPOINT_NAME.match(name):
        raise ValueError(f"invalid checkpoint name {name!r}")
    return name


def checkpoint(client: docker.DockerClient, local: bool, container_id: str, name: str) -> None:
    runsc = _runsc_of(client, local, container_id)
    api = client.api
    url = api._url("/containers/{0}/checkpoints", container_id)
    try:
        api._raise_for_status(api._post_json(url, data={"CheckpointID": _check_name(name), "Exit": True}))
    except docker.errors.APIError as exc:
        raise CheckpointUnavailable(f"the engine could not checkpoint the container: {_reason(exc)}") from exc
    release_runtime_state(runsc, container_id)


def _runsc_of(client: docker.DockerClient, local: bool, container_id: str) -> str:
    """The runsc binary of the container's runtime, once we know its state can be cleared."""
    if not local:
        raise CheckpointUnavailable("the Docker engine is not on this machine (its runsc state cannot be cleared)")
    if os.geteuid() != 0:
        raise CheckpointUnavailable("saving memory needs root on the Docker host (to clear runsc's state after it)")
    runtime = str(client.api.inspect_container(container_id).get("HostConfig", {}).get("Runtime") or "")
    path = str(((client.info().get("Runtimes") or {}).get(runtime) or {}).get("path") or "")
    if os.path.basename(path) != "runsc" or not os.path.isabs(path):
        raise CheckpointUnavailable(f"the container's runtime {runtime!r} is not gVisor's runsc")
    if not RUNTIME_ROOT.is_dir():
        raise CheckpointUnavailable(f"runsc's state directory {RUNTIME_ROOT} is not where Docker 20.10 keeps it")
    return path


def release_runtime_state(runsc: str, container_id: str) -> None:
    """Remove runsc's state of a checkpointed container (see the module's docstring)."""
    if not CONTAINER_ID.match(container_id):
        raise CheckpointUnavailable(f"unexpected container id {container_id[:80]!r}")
    if not any(RUNTIME_ROOT.glob(f"{container_id}_sandbox:*")):
        return
    subprocess.run(
        [runsc, "--root", str(RUNTIME_ROOT), "delete", "--force", container_id],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
        check=False,
    )
    if any(RUNTIME_ROOT.glob(f"{container_id}_sandbox:*.state")):
        raise CheckpointUnavailable("runsc kept the checkpointed sandbox; it would not start again")


def start(api: docker.APIClient, container_id: str, checkpoint: str | None) -> None:
    if checkpoint is None:
        api.start(container_id)
        return
    url = api._url("/containers/{0}/start", container_id)
    for attempt in range(2):
        try:
            api._raise_for_status(api._post(url, params={"checkpoint": _check_name(checkpoint)}))
            return
        except docker.errors.APIError as exc:
            # dockerd uploads the checkpoint to containerd's content store, and sometimes finds it
            # there already ("commit failed: content sha256:...: already exists"); it removes the
            # upload when the start ends, and a second attempt then goes through.
            if attempt == 0 and "already exists" in _reason(exc):
                time.sleep(0.5)
                continue
            raise CheckpointUnavailable(f"the engine could not restore the checkpoint: {_reason(exc)}") from exc


def remove_checkpoint(api: docker.APIClient, container_id: str, name: str) -> None:
    url = api._url("/containers/{0}/checkpoints/{1}", container_id, _check_name(name))
    try:
        api._raise_for_status(api._delete(url))
    except docker.errors.NotFound:
        pass


def copy_checkpoint(client: docker.DockerClient, local: bool, source_id: str, target_id: str, name: str) -> None:
    """Copy `<docker root>/containers/<source>/checkpoints/<name>` to the target's directory."""
    if not local:
        raise CheckpointUnavailable("the Docker engine is not on this machine, so a checkpoint cannot be copied")
    if os.geteuid() != 0:
        raise CheckpointUnavailable("copying a checkpoint into another container needs root on the Docker host")
    root = Path(str(client.info().get("DockerRootDir") or "/var/lib/docker")) / "containers"
    for container_id in (source_id, target_id):
        if not CONTAINER_ID.match(container_id):
            raise CheckpointUnavailable(f"unexpected container id {container_id[:80]!r}")
    source = root / source_id / "checkpoints" / _check_name(name)
    target_dir = root / target_id / "checkpoints"
    if not source.is_dir():
        raise CheckpointUnavailable(f"checkpoint {name} is not in {source.parent} (is Docker's data dir elsewhere?)")
    if not (root / target_id).is_dir():
        raise CheckpointUnavailable(f"the new container's directory {root / target_id} does not exist")
    try:
        target_dir.mkdir(mode=0o700, exist_ok=True)
        staging = target_dir / f".{name}.copying"
        shutil.rmtree(staging, ignore_errors=True)
        # Never follow links out of Docker's directory: copy them as links (runsc writes none anyway).
        shutil.copytree(source, staging, symlinks=True)
        os.replace(staging, target_dir / name)
    except OSError as exc:
        raise CheckpointUnavailable(f"could not copy the checkpoint: {exc}") from exc


def commit(api: docker.APIClient, container_id: str, image: str, labels: dict[str, str]) -> str:
    repository, _, tag = image.rpartition(":")
    if not repository:
        repository, tag = image, "latest"
    result = api.commit(container_id, repository=repository, tag=tag, pause=True, conf={"Labels": labels})
    return str(result.get("Id", ""))


def labelled_images(client: docker.DockerClient, label: str) -> list[ImageInfo]:
    found = []
    for image in client.images.list(filters={"label": label}):
        attrs = image.attrs
        found.append(
            ImageInfo(
                id=str(image.id),
                tags=tuple(image.tags),
                labels=dict(attrs.get("Config", {}).get("Labels") or {}),
                size_bytes=int(attrs.get("Size") or 0),
                created_at=parse_time(attrs.get("Created")) or 0.0,
            )
        )
    return found


def remove_image(api: docker.APIClient, name: str) -> None:
    try:
        api.remove_image(name, force=False, noprune=False)
    except docker.errors.ImageNotFound:
        pass
    except docker.errors.NotFound:
        pass


def parse_time(value: object) -> float | None:
    """Docker's RFC 3339 times (nanoseconds, 'Z'); None for missing or the zero time."""
    if not isinstance(value, str) or not value or value.startswith("0001-"):
        return None
    text = re.sub(r"(\.\d{6})\d+", r"\1", value).replace("Z", "+00:00")
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def _reason(exc: docker.errors.APIError) -> str:
    text = explain(exc)
    # runsc's restore errors are long; the first and last lines say what happened.
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    short = lines[0] if len(lines) <= 1 else f"{lines[0]} ... {lines[-1]}"
    return short[:600]
