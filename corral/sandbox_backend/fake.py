"""An in-memory `Engine` for unit tests, in the spirit of httpx's `MockTransport`.

Containers are dicts; events go to watchers like Docker's event stream; every operation is
recorded in `calls`; `fail_next(op, exc)` makes the next call of an operation raise. An exec
stream is served by a `FakeAgent` that speaks the real agent framing (4-byte length + JSON) and
answers ops from a table tests can extend. Nothing here touches Docker, the network or a process,
so the service's lifecycle, reconcile and rollback logic runs anywhere in milliseconds.

This is a test double with real behaviour, not a mock: it enforces the same rules the service
relies on (a container must exist and run to be exec'd into; removing a missing one is fine).
"""

from __future__ import annotations

import json
import secrets
import struct
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from corral.agent.bundle import agent_version
from corral.config import DEFAULT_IMAGE
from corral.errors import (
    BackendError,
    BackendUnavailable,
    CheckpointUnavailable,
    CorralError,
    DiskQuotaUnavailable,
    ImageNotFound,
)
from corral.sandbox_backend.engine import (
    Capabilities,
    ContainerInfo,
    ContainerSpec,
    ContainerStats,
    EventHandler,
    ExecOutput,
    ExecStream,
    ImageInfo,
    NetworkInfo,
    NetworkSpec,
    StderrListener,
    VolumeInfo,
    VolumeSpec,
)
from corral.sandbox_backend.firewall import FakeFirewall

_HEADER = struct.Struct(">I")
_BINARY = 0x80000000

AgentOp = Callable[[dict[str, Any]], Awaitable[dict[str, Any]] | dict[str, Any]]


class FakeAgentError(Exception):
    """Raise from an op handler to answer with an agent error frame of `kind`."""

    def __init__(self, kind: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.field = field


@dataclass
class FakeContainer:
    id: str
    spec: ContainerSpec
    status: str = "created"
    started_at: float | None = None
    files: dict[str, bytes] = field(default_factory=dict)  # put_archive payloads by path
    # checkpoint name -> the start time of the run it saved (a restored agent keeps its start time)
    checkpoints: dict[str, float | None] = field(default_factory=dict)
    memory_bytes: int = 40 * 1024 * 1024  # what `stats` reports; tests may change it
    oom_killed: bool = False
    exit_code: int | None = None

    def info(self) -> ContainerInfo:
        return ContainerInfo(
            id=self.id,
            name=self.spec.name,
            status=self.status,
            labels=dict(self.spec.labels),
            runtime=self.spec.runtime,
            image=self.spec.image,
            started_at=self.started_at if self.status == "running" else None,
            oom_killed=self.oom_killed,
            exit_code=self.exit_code if self.status == "exited" else None,
        )


class FakeAgent(ExecStream):
    """The agent end of one exec stream. `ops` maps op names to handlers; `hello` is built in."""

    def __init__(
        self, container: FakeContainer, ops: Mapping[str, AgentOp], version: str, engine: FakeEngine | None = None
    ) -> None:
        self._engine = engine
        self._container = container
        self._ops = ops
        self._version = version
        self._inbox = bytearray()
        self._outbox = bytearray()
        self._ready = anyio.Event()
        self._closed = False
        self.exec_id = f"exec-{secrets.token_hex(4)}"

    @property
    def closed(self) -> bool:
        return self._closed

    # ByteStream ------------------------------------------------------------------------------

    async def send(self, item: bytes) -> None:
        if self._closed or self._container.status != "running":
            raise anyio.BrokenResourceError
        self._inbox += item
        while len(self._inbox) >= 4:
            (size,) = _HEADER.unpack(self._inbox[:4])
            binary, size = bool(size & _BINARY), size & ~_BINARY
            if len(self._inbox) < 4 + size:
                break
            body = bytes(self._inbox[4 : 4 + size])
            del self._inbox[: 4 + size]
            if binary:  # docs/agent-protocol.md: JSON length, JSON, then the raw `bytes`
                (json_size,) = _HEADER.unpack(body[:4])
                frame = json.loads(body[4 : 4 + json_size])
                frame["bytes"] = body[4 + json_size :]
            else:
                frame = json.loads(body)
            await self._answer(frame)

    async def receive(self, max_bytes: int = 65536) -> bytes:
        while not self._outbox:
            if self._closed:
                raise anyio.EndOfStream
            await self._ready.wait()
            self._ready = anyio.Event()
        data = bytes(self._outbox[:max_bytes])
        del self._outbox[:max_bytes]
        return data

    async def send_eof(self) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._closed = True
        self._ready.set()

    # protocol --------------------------------------------------------------------------------

    def _emit(self, frame: dict[str, Any]) -> None:
        raw = frame.get("bytes")
        if isinstance(raw, bytes):
            frame = {k: v for k, v in frame.items() if k != "bytes"}
        data = json.dumps(frame).encode()
        if isinstance(raw, bytes):
            self._outbox += _HEADER.pack((4 + len(data) + len(raw)) | _BINARY) + _HEADER.pack(len(data)) + data + raw
        else:
            self._outbox += _HEADER.pack(len(data)) + data
        self._ready.set()

    async def _answer(self, frame: dict[str, Any]) -> None:
        rid, op = frame.get("id"), frame.get("op")
        params = {k: v for k, v in frame.items() if k not in ("id", "op")}
        if op == "hello":
            gate = self._engine.hello_gate if self._engine is not None else None
            if gate is not None and not gate.is_set():
                assert self._engine is not None
                self._engine.hello_held.set()
                await gate.wait()
            self._emit({"id": rid, "event": "result", **self._hello()})
            return
        if op == "prepare_checkpoint" and op not in self._ops:
            # Like the daemon: answer, then end the connection (the relay exits).
            self._emit({"id": rid, "event": "result", "killed": 0})
            self._closed = True
            self._ready.set()
            return
        handler = self._ops.get(str(op))
        if handler is None:
            self._emit({"id": rid, "event": "error", "error": {"type": "bad_request", "message": f"unknown op {op}"}})
            return
        try:
            result = handler(params)
            if not isinstance(result, dict):
                result = await result
        except FakeAgentError as exc:
            error = {"type": exc.kind, "message": exc.message, **({"field": exc.field} if exc.field else {})}
            self._emit({"id": rid, "event": "error", "error": error})
            return
        self._emit({"id": rid, "event": "result", **result})

    def _hello(self) -> dict[str, Any]:
        return {
            "version": self._version,
            "protocol": 1,
            "pid": 2,
            "uid": 1000,
            "python": "3.11",
            "cwd": self._container.spec.workdir,
            "agent_dir": "/tmp/.corral",
            "mode": "daemon",
            "started": self._container.started_at,
        }


class FakeEngine:
    def __init__(
        self,
        *,
        runtimes: Sequence[str] = ("runc", "corral-runsc", "corral-runsc-net"),
        images: Sequence[str] = (DEFAULT_IMAGE,),
        pullable: Sequence[str] = (),
        agent_ops: Mapping[str, AgentOp] | None = None,
        agent_version: str | None = None,
        checkpoint: bool = True,
        checkpoint_copy: bool = True,
    ) -> None:
        self.capabilities = Capabilities(
            label_index=True,
            exec_attach=True,
            checkpoint=checkpoint,
            checkpoint_copy=checkpoint_copy,
            commit=True,
            disk_quota=True,
        )
        self.containers: dict[str, FakeContainer] = {}
        self.images: set[str] = set(images)
        self.image_labels: dict[str, dict[str, str]] = {}
        self.agents: dict[str, FakeAgent] = {}  # exec id -> the agent end of an exec stream
        self.image_bytes = 1_000_000_000
        self.pullable: set[str] = set(pullable)
        self.networks: dict[str, NetworkInfo] = {}
        self.firewall: FakeFirewall = FakeFirewall()
        self.volumes: dict[str, VolumeSpec] = {}
        # Backing storage left without its volume (as a crash between the two would leave it).
        self.stray_disks: set[str] = set()
        self.disk_quota_problem: str | None = None  # set to make sized volumes fail like a non-root host
        self.runtime_names: set[str] = set(runtimes)
        self.agent_ops: dict[str, AgentOp] = dict(agent_ops or {})
        self.agent_version = agent_version
        # While set and not yet set off, agents hold their answer to `hello` (a slow agent start).
        self.volume_root: Path | None = None  # set: plain volumes are directories under it (volume_dir)
        self.hello_gate: anyio.Event | None = None
        self.hello_held = anyio.Event()  # set once an agent holds its hello at the gate
        self.calls: list[tuple[str, str]] = []
        self.execs: list[tuple[list[str], dict[str, str]]] = []  # exec_collect's (argv, env)
        self.reachable = True
        self.closed = False
        self._failures: dict[str, list[CorralError]] = {}
        self._watchers: list[tuple[str, EventHandler]] = []
        self._event_queue: list[tuple[str, Mapping[str, str]]] = []

    # test controls -----------------------------------------------------------------------------

    def fail_next(self, op: str, exc: CorralError) -> None:
        """Make the next call of `op` (an Engine method name) raise `exc`."""
        self._failures.setdefault(op, []).append(exc)

    async def emit(self, container_id: str, action: str) -> None:
        """Deliver an engine event about a container to every watcher whose label it carries."""
        container = self.containers.get(container_id)
        labels = dict(container.spec.labels) if container else {}
        for label, handle in list(self._watchers):
            key, _, value = label.partition("=")
            if labels.get(key) == value:
                await handle(action, labels)

    async def stop_container(
        self, container_id: str, *, action: str = "die", oom: bool = False, exit_code: int = 137
    ) -> None:
        """The container stops on its own (OOM, crash, `docker stop` by someone else)."""
        container = self.containers[container_id]
        container.status, container.oom_killed, container.exit_code = "exited", oom, exit_code
        await self.emit(container_id, action)

    async def vanish(self, container_id: str) -> None:
        """The container is removed behind Corral's back."""
        await self.emit(container_id, "destroy")
        self.containers.pop(container_id, None)

    def by_label(self, key: str, value: str) -> list[FakeContainer]:
        return [c for c in self.containers.values() if c.spec.labels.get(key) == value]

    def _enter(self, op: str, target: str = "") -> None:
        self.calls.append((op, target))
        if not self.reachable:
            raise BackendUnavailable(f"{op}: the Docker engine is not reachable (fake engine switched off)")
        queue = self._failures.get(op)
        if queue:
            raise queue.pop(0)

    def _get(self, container_id: str, what: str) -> FakeContainer:
        container = self.containers.get(container_id)
        if container is None:
            raise BackendError(f"{what}: not found (No such container: {container_id})")
        return container

    # Engine ------------------------------------------------------------------------------------

    async def close(self) -> None:
        self.closed = True

    async def runtimes(self) -> set[str]:
        self._enter("runtimes")
        return set(self.runtime_names)

    async def image_exists(self, name: str) -> bool:
        self._enter("image_exists", name)
        return name in self.images

    async def list_images(self) -> set[str]:
        self._enter("list_images")
        return set(self.images)

    async def image_size(self, name: str) -> int | None:
        self._enter("image_size", name)
        return self.image_bytes if name in self.images else None

    async def pull_image(self, name: str) -> None:
        self._enter("pull_image", name)
        if name not in self.pullable:
            raise ImageNotFound(f"pull image {name}: image not found (pull access denied for {name})")
        self.images.add(name)

    async def create_container(self, spec: ContainerSpec) -> str:
        self._enter("create_container", spec.name)
        if spec.image not in self.images:
            raise ImageNotFound(f"create container {spec.name}: image not found ({spec.image})")
        if spec.runtime not in self.runtime_names:
            raise BackendError(f"create container {spec.name}: Docker refused: unknown runtime {spec.runtime}")
        if any(c.spec.name == spec.name for c in self.containers.values()):
            raise BackendError(f"create container {spec.name}: Docker refused: name already in use")
        for mount in spec.volumes:
            if mount.volume is not None and mount.volume not in self.volumes:
                raise BackendError(f"create container {spec.name}: Docker refused: no such volume {mount.volume}")
        container_id = secrets.token_hex(32)
        self.containers[container_id] = FakeContainer(container_id, spec)
        return container_id

    async def start(self, container_id: str, *, checkpoint: str | None = None) -> None:
        self._enter("start", container_id)
        container = self._get(container_id, "start container")
        if container.status == "running":
            return
        if checkpoint is not None:
            if checkpoint not in container.checkpoints:
                raise CheckpointUnavailable(f"the engine could not restore the checkpoint: no checkpoint {checkpoint}")
            container.started_at = container.checkpoints[checkpoint]
        else:
            container.started_at = time.time()
        container.status = "running"
        await self.emit(container_id, "start")

    async def checkpoint(self, container_id: str, name: str) -> None:
        self._enter("checkpoint", container_id)
        container = self._get(container_id, "checkpoint container")
        if not self.capabilities.checkpoint:
            raise CheckpointUnavailable("the engine could not checkpoint the container: not supported by this engine")
        if container.status != "running":
            raise BackendError("checkpoint container: Docker refused: container is not running")
        container.checkpoints[name] = container.started_at
        container.status = "exited"
        await self.emit(container_id, "die")

    async def remove_checkpoint(self, container_id: str, name: str) -> None:
        self._enter("remove_checkpoint", container_id)
        container = self.containers.get(container_id)
        if container is not None:
            container.checkpoints.pop(name, None)

    async def copy_checkpoint(self, source_id: str, target_id: str, name: str) -> None:
        self._enter("copy_checkpoint", target_id)
        if not self.capabilities.checkpoint_copy:
            raise CheckpointUnavailable("copying a checkpoint into another container needs root on the Docker host")
        source = self._get(source_id, "copy checkpoint")
        if name not in source.checkpoints:
            raise CheckpointUnavailable(f"checkpoint {name} does not exist")
        self._get(target_id, "copy checkpoint").checkpoints[name] = source.checkpoints[name]

    async def commit(self, container_id: str, image: str, labels: Mapping[str, str]) -> str:
        self._enter("commit", container_id)
        self._get(container_id, "commit container")
        self.images.add(image)
        self.image_labels[image] = dict(labels)
        return f"sha256:{secrets.token_hex(32)}"

    async def labelled_images(self, label: str) -> list[ImageInfo]:
        self._enter("labelled_images", label)
        key, _, value = label.partition("=")
        return [
            ImageInfo(id=name, tags=(name,), labels=labels, size_bytes=1024, created_at=0.0)
            for name, labels in self.image_labels.items()
            if labels.get(key) == value and name in self.images
        ]

    async def remove_image(self, name: str) -> None:
        self._enter("remove_image", name)
        if any(c.spec.image == name for c in self.containers.values()):
            raise BackendError(f"remove image {name}: Docker refused: image is being used by a container")
        self.images.discard(name)
        self.image_labels.pop(name, None)

    async def stop(self, container_id: str, *, timeout: float = 10) -> None:
        self._enter("stop", container_id)
        container = self._get(container_id, "stop container")
        if container.status == "running":
            container.status = "exited"
            await self.emit(container_id, "die")
            await self.emit(container_id, "stop")

    async def stats(self, container_id: str) -> ContainerStats | None:
        self._enter("stats", container_id)
        container = self.containers.get(container_id)
        if container is None or container.status != "running":
            return None
        return ContainerStats(
            cpu_percent=1.5,
            memory_bytes=container.memory_bytes,
            memory_limit=container.spec.memory_bytes,
            pids=38,
            net_rx_bytes=None if container.spec.network is None else 0,
            net_tx_bytes=None if container.spec.network is None else 0,
        )

    async def remove(self, container_id: str) -> None:
        self._enter("remove", container_id)
        if container_id in self.containers:
            await self.emit(container_id, "destroy")
            self.containers.pop(container_id, None)

    async def inspect(self, container_id: str) -> ContainerInfo | None:
        self._enter("inspect", container_id)
        container = self.containers.get(container_id)
        return container.info() if container else None

    async def list_labeled(self, label: str) -> list[ContainerInfo]:
        self._enter("list_labeled", label)
        key, _, value = label.partition("=")
        return [c.info() for c in self.containers.values() if c.spec.labels.get(key) == value]

    async def put_archive(self, container_id: str, path: str, data: bytes) -> None:
        self._enter("put_archive", container_id)
        self._get(container_id, "copy into container").files[path] = data

    async def open_exec_stream(
        self, container_id: str, argv: Sequence[str], *, user: str = "", workdir: str | None = None
    ) -> FakeAgent:
        self._enter("open_exec_stream", container_id)
        container = self._get(container_id, "attach to container")
        if container.status != "running":
            raise BackendError(f"attach to container: Docker refused: container {container_id[:12]} is not running")
        agent = FakeAgent(container, self.agent_ops, self.agent_version or agent_version(), self)
        self.agents[agent.exec_id] = agent
        return agent

    async def exec_exit_code(self, exec_id: str) -> int | None:
        self._enter("exec_exit_code", exec_id)
        agent = self.agents.get(exec_id)
        return 0 if agent is not None and agent.closed else None

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
        self._enter("exec_collect", container_id)
        container = self._get(container_id, "exec in container")
        self.execs.append((list(argv), dict(env or {})))
        if list(argv) == ["uname", "-r"]:  # gVisor's kernel says 4.4.0; runc shows the host's
            return ExecOutput(0, b"4.4.0\n" if "runsc" in container.spec.runtime else b"6.1.0\n", b"")
        return ExecOutput(0, b"", b"")

    async def create_volume(self, spec: VolumeSpec) -> None:
        self._enter("create_volume", spec.name)
        if spec.size_bytes is not None and self.disk_quota_problem:
            raise DiskQuotaUnavailable(f"cannot give the sandbox a disk limit: {self.disk_quota_problem}")
        if spec.name in self.volumes:
            raise BackendError(f"create volume {spec.name}: Docker refused: volume already exists")
        if spec.copy_of is not None:
            if spec.copy_of not in self.volumes:
                raise BackendError(f"create volume {spec.name}: no volume {spec.copy_of} to copy")
            users = [c for c in self.containers.values() if any(m.volume == spec.copy_of for m in c.spec.volumes)]
            if any(c.status == "running" for c in users):
                raise BackendError(f"create volume {spec.name}: {spec.copy_of} is in use by a running container")
        self.volumes[spec.name] = spec

    async def remove_volume(self, name: str) -> None:
        self._enter("remove_volume", name)
        users = [c.spec.name for c in self.containers.values() if any(m.volume == name for m in c.spec.volumes)]
        if users:
            raise BackendError(f"remove volume {name}: Docker refused: volume is in use by {users}")
        self.volumes.pop(name, None)
        self.stray_disks.discard(name)

    async def volume_dir(self, name: str) -> str | None:
        self._enter("volume_dir", name)
        if name not in self.volumes or self.volume_root is None:
            return None
        path = self.volume_root / name
        path.mkdir(exist_ok=True)
        return str(path)

    async def list_volumes(self, label: str) -> list[VolumeInfo]:
        self._enter("list_volumes", label)
        key, _, value = label.partition("=")
        found = [VolumeInfo(v.name, dict(v.labels), v.size_bytes) for v in self.volumes.values()]
        found = [v for v in found if v.labels.get(key) == value]
        found += [VolumeInfo(name, {}, None) for name in sorted(self.stray_disks - set(self.volumes))]
        return found

    async def ensure_network(self, spec: NetworkSpec) -> NetworkInfo:
        self._enter("ensure_network", spec.name)
        if spec.name not in self.networks:
            n = len(self.networks) + 1
            self.networks[spec.name] = NetworkInfo(
                # The gateway is loopback so that a real proxy can listen on it in unit tests.
                spec.name,
                dict(spec.labels),
                spec.internal,
                "127.0.0.1",
                f"198.18.{n}.0/24",
                spec.bridge or f"br-fake{n}",
            )
        return self.networks[spec.name]

    async def remove_network(self, name: str) -> bool:
        self._enter("remove_network", name)
        if any(c.spec.network == name for c in self.containers.values()):
            return False
        self.networks.pop(name, None)
        return True

    async def list_networks(self, label: str) -> list[NetworkInfo]:
        self._enter("list_networks", label)
        key, _, value = label.partition("=")
        return [n for n in self.networks.values() if n.labels.get(key) == value]

    async def watch_container_events(self, label: str, handle: EventHandler) -> None:
        entry = (label, handle)
        self._watchers.append(entry)
        try:
            await anyio.sleep_forever()
        finally:
            self._watchers.remove(entry)
