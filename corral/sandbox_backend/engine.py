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

    async def pull_image(self, name: str) -> None: ...

    async def create_container(self, spec: ContainerSpec) -> str:
        """Create (not start) a container; returns its id."""
        ...

    async def start(self, container_id: str) -> None: ...

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

    async def ensure_network(self, spec: NetworkSpec) -> NetworkInfo:
        """Create the bridge network `spec.name` unless it exists; returns what exists."""
        ...

    async def remove_network(self, name: str) -> bool:
        """Remove the network; True when it is gone (or never was), False while containers use it."""
        ...

    async def list_networks(self, label: str) -> list[NetworkInfo]:
        """Every network carrying `label` ("key=value")."""
        ...

    async def watch_container_events(self, label: str, handle: EventHandler) -> None:
        """Call `handle(action, labels)` for every event of containers carrying `label`, until
        cancelled; survives engine restarts."""
        ...
