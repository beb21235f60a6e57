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

EventHandler = Callable[[str, Mapping[str, str]], Awaitable[None]]  # (action, labels)
StderrListener = Callable[[bytes], Coroutine[Any, Any, None]]


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


@dataclass(frozen=True)
class ContainerInfo:
    id: str
    name: str
    status: str  # created | running | paused | restarting | exited | dead
    labels: Mapping[str, str]
    runtime: str
    image: str
    started_at: float | None = None  # when its current run began (epoch seconds), if running

    @property
    def running(self) -> bool:
        return self.status == "running"


@dataclass(frozen=True)
class ExecOutput:
    exit_code: int
    stdout: bytes
    stderr: bytes


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


@dataclass(frozen=True)
class ContainerStats:
    """One sample of a running container's resource use."""

    cpu_percent: float | None  # of one core; None when the engine gave a single sample
    memory_bytes: int  # in use, page cache that can be dropped not counted (what `docker stats` shows)
    memory_limit: int
    pids: int  # host threads under gVisor's ptrace platform, not processes in the sandbox
    net_rx_bytes: int | None = None  # None: no network
    net_tx_bytes: int | None = None


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
        """Start a created or stopped container; with `checkpoint`, restore its memory from that
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

    async def stats(self, container_id: str) -> ContainerStats:
        """One sample of a running container's CPU, memory, pids and network use."""
        ...

    async def remove(self, container_id: str) -> None:
        """Remove with force; a container that is already gone is not an error."""
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

    async def ensure_network(self, name: str, labels: Mapping[str, str]) -> None:
        """Create the bridge network `name` unless it exists."""
        ...

    async def watch_container_events(self, label: str, handle: EventHandler) -> None:
        """Call `handle(action, labels)` for every event of containers carrying `label`, until
        cancelled; survives engine restarts."""
        ...
