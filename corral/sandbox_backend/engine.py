"""The seam between Corral and a container engine: the operations the service needs, nothing more.

`Engine` is a Protocol with two implementations: `sandbox_backend.docker.DockerEngine` (the real
one) and `sandbox_backend.fake.FakeEngine` (in memory, for unit tests). A second backend (say,
Kubernetes) implements the same operations. Engine-specific ideas stay behind the seam and are
offered as `Capabilities` the service can ask about, never assumed.

Every implementation raises only `corral.errors` exceptions (BackendError and its subclasses);
its dependency's own exceptions are translated at this boundary and never leak.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from anyio.abc import ByteStream

from corral.sandbox_backend.firewall import Firewall

EventHandler = Callable[[str, Mapping[str, str]], Awaitable[None]]  # (action, labels)
StderrListener = Callable[[bytes], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class VolumeMount:
    """A volume mounted at `target`: one made with `Engine.create_volume` (by name), or, with
    `volume=None`, an anonymous one that belongs to the container and goes when it is removed."""

    target: str
    volume: str | None = None
    # A new, empty volume gets the image's files at `target` (and their owner) copied in first;
    # off for volumes whose content only the host provides (an image could bring its own).
    copy_image_files: bool = True


@dataclass(frozen=True)
class TmpfsMount:
    """A memory-backed file system of at most `size_bytes` (it counts against the memory limit)."""

    target: str
    size_bytes: int
    mode: int = 0o1777


@dataclass(frozen=True)
class VolumeSpec:
    """A volume of its own storage. With `size_bytes`, writing past it fails with ENOSPC inside the
    container and never reaches the host's disk; `None` (only when the operator turned disk limits
    off) makes an unlimited one. Its root belongs to uid:gid. With `copy_of`, it starts as a copy of
    that volume (same size; no running container may have it mounted): forks and snapshots."""

    name: str
    labels: Mapping[str, str]
    size_bytes: int | None
    uid: int = 1000
    gid: int = 1000
    copy_of: str | None = None


@dataclass(frozen=True)
class VolumeInfo:
    name: str
    labels: Mapping[str, str]
    size_bytes: int | None = None
    created_at: float | None = None  # unix time


@dataclass(frozen=True)
class ContainerSpec:
    """Everything a container is made from. There is no field for raw engine options: what is not
    here cannot be asked for (see `service.containers`, the one place specs are made)."""

    name: str
    image: str
    runtime: str
    labels: Mapping[str, str]
    memory_bytes: int
    nano_cpus: int
    pids_limit: int
    user: str
    workdir: str
    env: Mapping[str, str] = field(default_factory=dict)
    network: str | None = None  # None: no network at all
    command: Sequence[str] = ("sleep", "infinity")
    hostname: str = "sandbox"
    # Nothing outside `volumes` and `tmpfs` is writable: the root file system is read-only.
    read_only_root: bool = False
    volumes: Sequence[VolumeMount] = ()
    tmpfs: Sequence[TmpfsMount] = ()
    shm_bytes: int | None = None  # /dev/shm; None: the engine's default
    # PID 1 is an init that reaps orphaned processes (else they stay zombies for ever).
    init: bool = False


@dataclass(frozen=True)
class NetworkSpec:
    """A bridge network. `internal`: no route out of it (no NAT, Docker drops forwarded traffic);
    `isolated`: its members cannot reach each other; `bridge`: the host interface's name."""

    name: str
    labels: Mapping[str, str]
    internal: bool = False
    isolated: bool = False
    bridge: str | None = None


@dataclass(frozen=True)
class NetworkInfo:
    name: str
    labels: Mapping[str, str]
    internal: bool
    gateway: str | None  # the host's address on it
    subnet: str | None
    bridge: str | None  # the host interface


@dataclass(frozen=True)
class ContainerInfo:
    id: str
    name: str
    status: str  # created | running | paused | restarting | exited | dead
    labels: Mapping[str, str]
    runtime: str
    image: str
    started_at: float | None = None  # when its current run began (epoch seconds), if running
    oom_killed: bool = False  # the last stop was the kernel's out-of-memory killer
    exit_code: int | None = None  # of the container's last run, once it stopped

    @property
    def running(self) -> bool:
        return self.status == "running"


@dataclass(frozen=True)
class ExecOutput:
    exit_code: int
    stdout: bytes
    stderr: bytes


@dataclass(frozen=True)
class ContainerStats:
    """A container's resource use, sampled now."""

    cpu_percent: float | None  # of one core (200.0 = two cores busy); None if not measurable
    memory_bytes: int
    memory_limit: int
    pids: int | None = None  # host threads under gVisor's ptrace platform, not processes in the sandbox
    net_rx_bytes: int | None = None  # None: no network
    net_tx_bytes: int | None = None


@dataclass(frozen=True)
class Capabilities:
    """What this engine can do beyond the common operations."""

    # Containers can be found by label alone (Docker: yes). Reconcile relies on it.
    label_index: bool = True
    # An exec can be attached to as a long-lived byte stream (the agent channel).
    exec_attach: bool = True
    # Memory checkpoint and restore of a stopped container.
    checkpoint: bool = False
    # A checkpoint can be copied to another container made from a commit of the first (fork with
    # memory). Docker: only next to the engine, as root (it writes into Docker's own directory).
    checkpoint_copy: bool = False
    # A container's file system can be saved as a new image (`commit`).
    commit: bool = False
    # Volumes with a size limit (Docker: an ext4 image on a loop device, when Corral runs as root
    # next to the engine; `create_volume` says why not otherwise).
    disk_quota: bool = False


@dataclass(frozen=True)
class ImageInfo:
    id: str
    tags: tuple[str, ...]
    labels: Mapping[str, str]
    size_bytes: int
    created_at: float


class ExecStream(ByteStream):
    """stdin/stdout of a process started in a container, as one anyio byte stream."""

    exec_id: str


class Engine(Protocol):
    capabilities: Capabilities

    @property
    def firewall(self) -> Firewall:
        """The host packet filter that fences this engine's sandbox networks (sandbox_backend/firewall.py)."""
        ...

    async def close(self) -> None: ...

    async def runtimes(self) -> set[str]:
        """Names of the container runtimes the engine knows (e.g. corral-runsc)."""
        ...

    async def image_exists(self, name: str) -> bool: ...

    async def list_images(self) -> set[str]:
        """Every name (repo:tag and repo@digest) of every image present on the engine."""
        ...

    async def image_size(self, name: str) -> int | None:
        """The image's size in bytes (uncompressed, as `docker images` shows it); None if absent."""
        ...

    async def pull_image(self, name: str) -> None: ...

    async def create_container(self, spec: ContainerSpec) -> str:
        """Create (not start) a container; returns its id."""
        ...

    async def start(self, container_id: str, *, checkpoint: str | None = None) -> None:
        """Start a created or stopped container, making its volumes ready first (a disk image is
        attached again after a host reboot); with `checkpoint`, restore its memory from that
        checkpoint instead of booting afresh (CheckpointUnavailable if that fails: the container
        stays stopped, a plain start still works)."""
        ...

    async def stop(self, container_id: str, *, timeout: float = 10) -> None:
        """Stop a running container (SIGTERM, SIGKILL after `timeout`); a stopped one is fine."""
        ...

    async def checkpoint(self, container_id: str, name: str) -> None:
        """Save the running container's memory as checkpoint `name` and stop it
        (CheckpointUnavailable, container still running or stopped, when the engine cannot)."""
        ...

    async def remove_checkpoint(self, container_id: str, name: str) -> None:
        """Forget checkpoint `name`; a missing one is not an error."""
        ...

    async def copy_checkpoint(self, source_id: str, target_id: str, name: str) -> None:
        """Copy checkpoint `name` of `source_id` to `target_id` (made from a commit of the source),
        so that `start(target_id, checkpoint=name)` resumes it there (`Capabilities.checkpoint_copy`)."""
        ...

    async def commit(self, container_id: str, image: str, labels: Mapping[str, str]) -> str:
        """Save the container's file system as image `image` (repo:tag) with `labels`; returns its id."""
        ...

    async def labelled_images(self, label: str) -> list[ImageInfo]:
        """Every image carrying `label` ("key=value")."""
        ...

    async def remove_image(self, name: str) -> None:
        """Remove an image by id or tag; a missing one is not an error."""
        ...

    async def remove(self, container_id: str) -> None:
        """Remove with force; a container that is already gone is not an error."""
        ...

    async def stats(self, container_id: str) -> ContainerStats | None:
        """Resource use of a running container; None if it is not running (or gone)."""
        ...

    async def inspect(self, container_id: str) -> ContainerInfo | None:
        """None when the container does not exist."""
        ...

    async def list_labeled(self, label: str) -> list[ContainerInfo]:
        """Every container (running or not) carrying `label` ("key=value")."""
        ...

    async def put_archive(self, container_id: str, path: str, data: bytes) -> None:
        """Unpack the tar `data` at `path` in the container (works on a created, unstarted one)."""
        ...

    async def open_exec_stream(
        self, container_id: str, argv: Sequence[str], *, user: str = "", workdir: str | None = None
    ) -> ExecStream:
        """Start `argv` in a running container with its stdin attached; its stdout is the stream."""
        ...

    async def exec_exit_code(self, exec_id: str) -> int | None: ...

    async def exec_collect(
        self,
        container_id: str,
        argv: Sequence[str],
        *,
        user: str = "",
        workdir: str | None = None,
        env: Mapping[str, str] | None = None,
        on_stderr: StderrListener | None = None,
        max_stdout: int = 64 * 1024 * 1024,
        stderr_keep: int = 64 * 1024,
    ) -> ExecOutput:
        """Run `argv` to completion and collect its output; `env` reaches only this process."""
        ...

    async def ensure_network(self, spec: NetworkSpec) -> NetworkInfo:
        """Create the bridge network `spec.name` unless it exists; returns what exists."""
        ...

    async def remove_network(self, name: str) -> bool:
        """Remove the network; True when it is gone (or never was), False while containers use it."""
        ...

    async def list_networks(self, label: str) -> list[NetworkInfo]:
        """Every network carrying `label` ("key=value")."""
        ...

    async def create_volume(self, spec: VolumeSpec) -> None:
        """Make a volume (and its backing storage). DiskQuotaUnavailable if a size limit cannot be
        enforced here: never an unlimited volume in its place."""
        ...

    async def remove_volume(self, name: str) -> None:
        """Remove a volume and its backing storage; a missing one is not an error. Its containers
        must be gone first."""
        ...

    async def volume_dir(self, name: str) -> str | None:
        """Where this host sees the files of a volume (for one with a size limit: while a container
        has it mounted), or None when it cannot (another kind of volume, an engine on another host)."""
        ...

    async def list_volumes(self, label: str) -> list[VolumeInfo]:
        """Every volume carrying `label` ("key=value"), and every piece of backing storage whose
        volume is gone (so nothing a crash left behind goes unseen)."""
        ...

    async def watch_container_events(self, label: str, handle: EventHandler) -> None:
        """Call `handle(action, labels)` for every event of containers carrying `label`, until
        cancelled; survives engine restarts."""
        ...
