"""The Docker seam: a thin async layer over the docker SDK, one method per engine operation.

Everything Docker raises is translated here (`map_docker_errors`) into `corral.errors`; nothing
above this module imports `docker`. Options are typed fields of `ContainerSpec`: there is no way to
pass raw Docker options through.
"""

from __future__ import annotations

import contextlib
import io
import logging
import socket
import struct
import tarfile
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
import anyio.from_thread
import anyio.to_thread
import docker
import docker.errors
import requests.exceptions
from anyio.abc import ByteStream

from corral.errors import BackendError, BackendUnavailable, ImageNotFound, PayloadTooLarge

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class ContainerSpec:
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

    @property
    def running(self) -> bool:
        return self.status == "running"


@dataclass(frozen=True)
class ExecOutput:
    exit_code: int
    stdout: bytes
    stderr: bytes


@contextlib.contextmanager
def map_docker_errors(what: str) -> Iterator[None]:
    """Translate docker/requests exceptions into Corral's tree, with a message that says what to do."""
    try:
        yield
    except docker.errors.ImageNotFound as exc:
        raise ImageNotFound(f"{what}: image not found ({_explain(exc)})") from exc
    except docker.errors.NotFound as exc:
        raise BackendError(f"{what}: not found ({_explain(exc)})") from exc
    except docker.errors.APIError as exc:
        raise BackendError(f"{what}: Docker refused: {_explain(exc)}") from exc
    except docker.errors.DockerException as exc:
        raise BackendUnavailable(
            f"{what}: cannot talk to the Docker engine ({exc}). Is dockerd running? "
            "`make serve` / scripts/setup-host.sh starts it."
        ) from exc
    except (requests.exceptions.ConnectionError, ConnectionError, FileNotFoundError) as exc:
        raise BackendUnavailable(
            f"{what}: the Docker engine is not reachable ({type(exc).__name__}). Is dockerd running? "
            "`make serve` / scripts/setup-host.sh starts it."
        ) from exc
    except requests.exceptions.RequestException as exc:
        raise BackendError(f"{what}: Docker request failed: {exc}") from exc


def _next_event(stream: Any) -> dict[str, Any] | None:
    try:
        return next(stream)  # type: ignore[no-any-return]
    except (StopIteration, docker.errors.DockerException, requests.exceptions.RequestException, OSError):
        return None


def _explain(exc: docker.errors.APIError | docker.errors.NotFound) -> str:
    explanation = getattr(exc, "explanation", None)
    return str(explanation or exc)


def _info(container: Any) -> ContainerInfo:
    attrs = container.attrs
    return ContainerInfo(
        id=container.id,
        name=attrs.get("Name", "").lstrip("/"),
        status=attrs.get("State", {}).get("Status", "unknown"),
        labels=attrs.get("Config", {}).get("Labels") or {},
        runtime=attrs.get("HostConfig", {}).get("Runtime", ""),
        image=attrs.get("Config", {}).get("Image", ""),
    )


class DockerEngine:
    """Async facade over a `docker.DockerClient`; the blocking SDK runs in worker threads.

    The client is made on first use (and again after a failure), so a server started while Docker
    is down comes up anyway and answers each call with a clear "Docker is not reachable" error.
    """

    def __init__(self, base_url: str | None = None, client: docker.DockerClient | None = None) -> None:
        self._base_url = base_url
        self._client_obj = client
        self._client_lock = threading.Lock()
        self._limiter = anyio.CapacityLimiter(32)

    @property
    def _client(self) -> docker.DockerClient:
        with self._client_lock:
            if self._client_obj is None:
                if self._base_url:
                    self._client_obj = docker.DockerClient(base_url=self._base_url, timeout=120)
                else:
                    self._client_obj = docker.DockerClient.from_env(timeout=120)
            return self._client_obj

    async def close(self) -> None:
        client, self._client_obj = self._client_obj, None
        if client is not None:
            await anyio.to_thread.run_sync(client.close)

    async def _run(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        def call() -> T:
            with map_docker_errors(what):
                return fn(*args, **kwargs)

        return await anyio.to_thread.run_sync(call, limiter=self._limiter)

    # -- engine -----------------------------------------------------------------------------

    async def runtimes(self) -> set[str]:
        info = await self._run("read Docker info", lambda: self._client.info())
        return set((info.get("Runtimes") or {}).keys())

    # -- images -----------------------------------------------------------------------------

    async def image_exists(self, name: str) -> bool:
        def check() -> bool:
            try:
                self._client.images.get(name)
            except docker.errors.ImageNotFound:
                return False
            return True

        return await self._run(f"look up image {name}", check)

    async def pull_image(self, name: str) -> None:
        await self._run(f"pull image {name}", lambda: self._client.images.pull(name))

    # -- containers ---------------------------------------------------------------------------

    async def create_container(self, spec: ContainerSpec) -> str:
        def create() -> str:
            container = self._client.containers.create(
                image=spec.image,
                command=list(spec.command),
                name=spec.name,
                hostname=spec.hostname,
                labels=dict(spec.labels),
                runtime=spec.runtime,
                user=spec.user,
                working_dir=spec.workdir,
                environment=dict(spec.env),
                mem_limit=spec.memory_bytes,
                memswap_limit=spec.memory_bytes,
                nano_cpus=spec.nano_cpus,
                pids_limit=spec.pids_limit,
                network_mode="none" if spec.network is None else spec.network,
                security_opt=["no-new-privileges"],
                # Sandbox processes run as a non-root user; they need no capability at all.
                cap_drop=["ALL"],
                init=False,
                detach=True,
            )
            return str(container.id)

        return await self._run(f"create container {spec.name}", create)

    async def start(self, container_id: str) -> None:
        await self._run("start container", lambda: self._client.api.start(container_id))

    async def remove(self, container_id: str) -> None:
        def remove() -> None:
            try:
                self._client.api.remove_container(container_id, force=True, v=True)
            except docker.errors.NotFound:
                pass

        await self._run("remove container", remove)

    async def inspect(self, container_id: str) -> ContainerInfo | None:
        def get() -> ContainerInfo | None:
            try:
                return _info(self._client.containers.get(container_id))
            except docker.errors.NotFound:
                return None

        return await self._run("inspect container", get)

    async def list_labeled(self, label: str) -> list[ContainerInfo]:
        def ls() -> list[ContainerInfo]:
            return [_info(c) for c in self._client.containers.list(all=True, filters={"label": label})]

        return await self._run("list containers", ls)

    async def put_archive(self, container_id: str, path: str, data: bytes) -> None:
        await self._run("copy into container", lambda: self._client.api.put_archive(container_id, path, data))

    async def open_exec_stream(
        self, container_id: str, argv: Sequence[str], *, user: str = "", workdir: str | None = None
    ) -> ExecStream:
        """Start `argv` with stdin attached and return its stdio as one byte stream."""

        def start() -> tuple[socket.socket, Any]:
            api = self._client.api
            exec_id = api.exec_create(
                container_id,
                list(argv),
                stdin=True,
                stdout=True,
                stderr=True,
                tty=False,
                user=user,
                workdir=workdir,
            )["Id"]
            raw = api.exec_start(exec_id, socket=True)
            sock = getattr(raw, "_sock", raw)
            if not isinstance(sock, socket.socket):
                raise BackendError("Docker returned an exec stream Corral cannot use (not a socket)")
            dup = sock.dup()
            with contextlib.suppress(Exception):
                raw.close()
            return dup, exec_id

        sock, exec_id = await self._run("attach to container", start)
        stream = await anyio.abc.SocketStream.from_socket(sock)
        return ExecStream(stream, exec_id)

    async def exec_exit_code(self, exec_id: str) -> int | None:
        info = await self._run("inspect exec", lambda: self._client.api.exec_inspect(exec_id))
        return info.get("ExitCode")

    # -- events ---------------------------------------------------------------------------------

    async def watch_container_events(
        self, label: str, handle: Callable[[str, Mapping[str, str]], Awaitable[None]]
    ) -> None:
        """Call `handle(action, labels)` for every container event (die, start, destroy, ...) of
        containers carrying `label`, until cancelled. Reconnects after Docker restarts."""
        while True:
            try:
                stream = await self._run(
                    "watch Docker events",
                    lambda: self._client.events(decode=True, filters={"type": "container", "label": label}),
                )
            except BackendError as exc:
                log.debug("event watch unavailable (%s); retrying", exc)
                await anyio.sleep(2)
                continue
            try:
                while True:
                    event = await anyio.to_thread.run_sync(_next_event, stream, abandon_on_cancel=True)
                    if event is None:
                        break
                    attrs = event.get("Actor", {}).get("Attributes", {}) or {}
                    await handle(str(event.get("Action", "")), attrs)
            finally:
                with contextlib.suppress(Exception):
                    stream.close()

    # -- short-lived helper containers (corral/service/git.py) -------------------------------------

    async def ensure_network(self, name: str, labels: Mapping[str, str]) -> None:
        """Create the bridge network `name` unless it exists (safe against a concurrent create)."""

        def ensure() -> None:
            try:
                self._client.networks.get(name)
                return
            except docker.errors.NotFound:
                pass
            try:
                self._client.networks.create(name, driver="bridge", labels=dict(labels), check_duplicate=True)
            except docker.errors.APIError as exc:
                if exc.status_code != 409:  # 409: created meanwhile by someone else
                    raise

        await self._run(f"create network {name}", ensure)

    async def exec_collect(
        self,
        container_id: str,
        argv: Sequence[str],
        *,
        user: str = "",
        workdir: str | None = None,
        env: Mapping[str, str] | None = None,
        on_stderr: Callable[[bytes], Coroutine[Any, Any, None]] | None = None,
        max_stdout: int = 64 * 1024 * 1024,
        stderr_keep: int = 64 * 1024,
    ) -> ExecOutput:
        """Run `argv` to completion in a running container: stdout is collected as bytes (more than
        `max_stdout` raises PayloadTooLarge), stderr goes to `on_stderr` as it arrives and its last
        `stderr_keep` bytes are returned. `env` reaches only this process: Docker keeps no record
        of an exec's environment. Cancelling abandons the call; removing the container ends it."""

        def run() -> ExecOutput:
            with map_docker_errors("exec in container"):
                api = self._client.api
                exec_id = api.exec_create(
                    container_id,
                    list(argv),
                    stdout=True,
                    stderr=True,
                    user=user,
                    workdir=workdir,
                    environment=dict(env or {}),
                )["Id"]
                out, err = bytearray(), bytearray()
                for chunk_out, chunk_err in api.exec_start(exec_id, stream=True, demux=True):
                    if chunk_out:
                        out += chunk_out
                        if len(out) > max_stdout:
                            raise PayloadTooLarge(f"the command wrote more than {max_stdout} bytes")
                    if chunk_err:
                        err += chunk_err
                        del err[:-stderr_keep]
                        if on_stderr is not None:
                            anyio.from_thread.run(on_stderr, bytes(chunk_err))
                code = api.exec_inspect(exec_id).get("ExitCode")
            return ExecOutput(-1 if code is None else int(code), bytes(out), bytes(err))

        return await anyio.to_thread.run_sync(run, limiter=self._limiter, abandon_on_cancel=True)


class ExecStream(ByteStream):
    """stdin/stdout of a `docker exec` as a byte stream: stdout frames demultiplexed from
    Docker's 8-byte headers, stderr frames passed to the log (the agent only writes diagnostics there)."""

    def __init__(self, stream: anyio.abc.SocketStream, exec_id: str) -> None:
        self._stream = stream
        self.exec_id = exec_id
        self._buf = bytearray()
        self._pending = bytearray()

    async def _fill(self) -> bool:
        chunk = await self._stream.receive(65536)
        self._buf += chunk
        return True

    async def receive(self, max_bytes: int = 65536) -> bytes:
        while not self._pending:
            while len(self._buf) < 8:
                try:
                    await self._fill()
                except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                    raise anyio.EndOfStream from None
            kind, size = struct.unpack(">BxxxL", self._buf[:8])
            while len(self._buf) < 8 + size:
                try:
                    await self._fill()
                except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                    raise anyio.EndOfStream from None
            payload = bytes(self._buf[8 : 8 + size])
            del self._buf[: 8 + size]
            if kind == 1:
                self._pending += payload
            elif payload:
                log.debug("agent stderr: %s", payload.decode(errors="replace").rstrip())
        data = bytes(self._pending[:max_bytes])
        del self._pending[:max_bytes]
        return data

    async def send(self, item: bytes) -> None:
        await self._stream.send(item)

    async def send_eof(self) -> None:
        await self._stream.send_eof()

    async def aclose(self) -> None:
        await self._stream.aclose()


def tar_directory(path: str, uid: int, gid: int, mode: int = 0o755) -> bytes:
    """A tar holding one empty directory owned by uid:gid (to give a foreign image a writable home)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(path.strip("/"))
        info.type = tarfile.DIRTYPE
        info.mode = mode
        info.uid, info.gid = uid, gid
        tar.addfile(info)
    return buf.getvalue()


__all__ = ["ContainerInfo", "ContainerSpec", "DockerEngine", "ExecOutput", "ExecStream"]
