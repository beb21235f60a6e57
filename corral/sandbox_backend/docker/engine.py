"""The Docker implementation of `sandbox_backend.engine.Engine`: one method per Engine API call.

A thin async layer over the docker SDK (which blocks, so it runs in worker threads). Everything
Docker raises is translated by `map_docker_errors`; nothing above this package imports `docker`.
Options are typed fields of `ContainerSpec`: there is no way to pass raw Docker options through.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.from_thread
import anyio.to_thread
import docker
import docker.errors

from corral.config import default_home
from corral.errors import BackendError, DiskQuotaUnavailable, PayloadTooLarge
from corral.sandbox_backend.docker import lifecycle
from corral.sandbox_backend.docker.disks import LoopDisks
from corral.sandbox_backend.docker.errors import map_docker_errors, next_event
from corral.sandbox_backend.docker.exec_stream import DockerExecStream
from corral.sandbox_backend.engine import (
    Capabilities,
    ContainerInfo,
    ContainerSpec,
    ContainerStats,
    EventHandler,
    ExecOutput,
    ImageInfo,
    NetworkInfo,
    NetworkSpec,
    StderrListener,
    VolumeInfo,
    VolumeSpec,
)
from corral.sandbox_backend.firewall import Firewall, IptablesFirewall

log = logging.getLogger(__name__)
T = TypeVar("T")


def _info(container: Any) -> ContainerInfo:
    attrs = container.attrs
    state = attrs.get("State", {}) or {}
    status = state.get("Status", "unknown")
    code = state.get("ExitCode")
    return ContainerInfo(
        id=container.id,
        name=attrs.get("Name", "").lstrip("/"),
        status=status,
        labels=attrs.get("Config", {}).get("Labels") or {},
        runtime=attrs.get("HostConfig", {}).get("Runtime", ""),
        image=attrs.get("Config", {}).get("Image", ""),
        started_at=lifecycle.parse_time(state.get("StartedAt")),
        oom_killed=bool(state.get("OOMKilled")),
        exit_code=code if isinstance(code, int) and status in ("exited", "dead") else None,
    )


def _when(stamp: object) -> float | None:
    """Docker's RFC 3339 time as unix time."""
    if not isinstance(stamp, str):
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _is_local(base_url: str | None) -> bool:
    return not base_url or base_url.startswith(("unix://", "/"))


def _stats(raw: Mapping[str, Any]) -> ContainerStats | None:
    cpu, pre = raw.get("cpu_stats") or {}, raw.get("precpu_stats") or {}
    memory = raw.get("memory_stats") or {}
    if not memory and not cpu.get("cpu_usage"):
        return None  # a stopped container reports nothing
    used = (cpu.get("cpu_usage") or {}).get("total_usage", 0) - (pre.get("cpu_usage") or {}).get("total_usage", 0)
    system = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
    cores = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or []) or 1
    percent = used / system * cores * 100.0 if system > 0 and used >= 0 and pre.get("system_cpu_usage") else None
    # Like `docker stats`: page cache the kernel can drop is not counted as used.
    cache = (memory.get("stats") or {}).get("total_inactive_file", 0)
    return ContainerStats(
        cpu_percent=percent,
        memory_bytes=max(0, int(memory.get("usage", 0)) - int(cache)),
        memory_limit=int(memory.get("limit", 0)),
        pids=(raw.get("pids_stats") or {}).get("current"),
        net_rx_bytes=_net(raw, "rx_bytes"),
        net_tx_bytes=_net(raw, "tx_bytes"),
    )


def _net(raw: Mapping[str, Any], key: str) -> int | None:
    networks = raw.get("networks")
    if not isinstance(networks, dict) or not networks:
        return None  # no network
    return sum(int(n.get(key) or 0) for n in networks.values() if isinstance(n, dict))


def _network_info(network: Any) -> NetworkInfo:
    return _network_info_attrs(network.attrs)


def _network_info_attrs(attrs: Mapping[str, Any]) -> NetworkInfo:
    ipam = ((attrs.get("IPAM") or {}).get("Config") or [{}])[0] or {}
    options = attrs.get("Options") or {}
    bridge = options.get("com.docker.network.bridge.name") or f"br-{str(attrs.get('Id', ''))[:12]}"
    return NetworkInfo(
        name=str(attrs.get("Name", "")),
        labels=attrs.get("Labels") or {},
        internal=bool(attrs.get("Internal")),
        gateway=ipam.get("Gateway"),
        subnet=ipam.get("Subnet"),
        bridge=bridge,
    )


class DockerEngine:
    """Async facade over a `docker.DockerClient`; the blocking SDK runs in worker threads.

    The client is made on first use (and again after a failure), so a server started while Docker
    is down comes up anyway and answers each call with a clear "Docker is not reachable" error.
    """

    # Checkpoints need dockerd's experimental features and a runtime that can checkpoint (runsc);
    # a call that cannot is answered with CheckpointUnavailable, which says why.
    capabilities = Capabilities(
        label_index=True, exec_attach=True, checkpoint=True, checkpoint_copy=True, commit=True, disk_quota=True
    )

    def __init__(
        self,
        base_url: str | None = None,
        client: docker.DockerClient | None = None,
        *,
        disk_dir: Path | None = None,
    ) -> None:
        """`disk_dir` holds the disk images of sized volumes (the data dir's `disks/`; by default
        the default data dir's)."""
        self._base_url = base_url
        self._client_obj = client
        self._client_lock = threading.Lock()
        self._limiter = anyio.CapacityLimiter(32)
        self._disks = LoopDisks(disk_dir or default_home() / "disks", engine_is_local=_is_local(base_url))
        self.firewall: Firewall = IptablesFirewall()

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

    async def list_images(self) -> set[str]:
        def ls() -> set[str]:
            names: set[str] = set()
            for image in self._client.api.images():
                names.update(n for n in (image.get("RepoTags") or []) + (image.get("RepoDigests") or []) if n)
            return names

        return await self._run("list images", ls)

    async def image_size(self, name: str) -> int | None:
        def size() -> int | None:
            try:
                return int(self._client.images.get(name).attrs.get("Size") or 0)
            except docker.errors.ImageNotFound:
                return None

        return await self._run(f"look up image {name}", size)

    async def pull_image(self, name: str) -> None:
        await self._run(f"pull image {name}", lambda: self._client.images.pull(name))

    # -- containers ---------------------------------------------------------------------------

    async def create_container(self, spec: ContainerSpec) -> str:
        def create() -> str:
            mounts = [
                docker.types.Mount(target=m.target, source=m.volume, type="volume", no_copy=not m.copy_image_files)
                for m in spec.volumes
            ]
            tmpfs = {t.target: f"size={t.size_bytes},mode={t.mode:o},exec,nosuid,nodev" for t in spec.tmpfs}
            extra: dict[str, Any] = {"shm_size": spec.shm_bytes} if spec.shm_bytes else {}
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
                # PID 1's stdout is writable by the sandbox user (/proc/1/fd/1): with a logging
                # driver, whatever it writes there lands in a file on the host, without limit.
                # Corral never reads container logs (it talks to the agent).
                log_config=docker.types.LogConfig(type="none"),
                init=spec.init,
                read_only=spec.read_only_root,
                mounts=mounts,
                tmpfs=tmpfs,
                detach=True,
                **extra,
            )
            return str(container.id)

        return await self._run(f"create container {spec.name}", create)

    async def start(self, container_id: str, *, checkpoint: str | None = None) -> None:
        def start() -> None:
            # A disk image is attached again after a host reboot (its loop device is gone).
            for mount in self._client.api.inspect_container(container_id).get("Mounts") or []:
                name = mount.get("Name")
                if mount.get("Type") == "volume" and name and name in self._disks.names():
                    self._disks.attach(name)
            lifecycle.start(self._client.api, container_id, checkpoint)

        await self._run("start container", start)

    async def stop(self, container_id: str, *, timeout: float = 10) -> None:
        await self._run("stop container", lambda: self._client.api.stop(container_id, timeout=int(timeout)))

    async def stats(self, container_id: str) -> ContainerStats | None:
        def sample() -> ContainerStats | None:
            try:
                # Not streamed: Docker waits for a second sample so the CPU share can be computed.
                raw = self._client.api.stats(container_id, stream=False)
            except docker.errors.NotFound:
                return None
            return _stats(raw)

        return await self._run("read container stats", sample)

    # -- memory checkpoints, commits, images ----------------------------------------------------

    @property
    def _local(self) -> bool:
        return str(self._client.api.base_url).startswith("http+docker://")  # a unix socket

    async def checkpoint(self, container_id: str, name: str) -> None:
        await self._run("checkpoint container", lifecycle.checkpoint, self._client, self._local, container_id, name)

    async def remove_checkpoint(self, container_id: str, name: str) -> None:
        await self._run("remove checkpoint", lifecycle.remove_checkpoint, self._client.api, container_id, name)

    async def copy_checkpoint(self, source_id: str, target_id: str, name: str) -> None:
        await self._run(
            "copy checkpoint", lifecycle.copy_checkpoint, self._client, self._local, source_id, target_id, name
        )

    async def commit(self, container_id: str, image: str, labels: Mapping[str, str]) -> str:
        api = self._client.api
        return await self._run("commit container", lifecycle.commit, api, container_id, image, dict(labels))

    async def labelled_images(self, label: str) -> list[ImageInfo]:
        return await self._run("list images", lifecycle.labelled_images, self._client, label)

    async def remove_image(self, name: str) -> None:
        await self._run(f"remove image {name}", lifecycle.remove_image, self._client.api, name)

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
    ) -> DockerExecStream:
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
        return await DockerExecStream.open(sock, exec_id)

    async def exec_exit_code(self, exec_id: str) -> int | None:
        info = await self._run("inspect exec", lambda: self._client.api.exec_inspect(exec_id))
        return info.get("ExitCode")

    # -- volumes --------------------------------------------------------------------------------

    def disk_quota_problem(self) -> str | None:
        """Why sized volumes cannot be made here (for `corral doctor`), or None."""
        return self._disks.problem()

    async def create_volume(self, spec: VolumeSpec) -> None:
        disks = self._disks

        def create() -> None:
            if spec.size_bytes is None:
                if spec.copy_of is not None:
                    raise BackendError("a volume without a disk limit cannot be copied")
                self._client.volumes.create(spec.name, driver="local", labels=dict(spec.labels))
                return
            problem = disks.problem()
            if problem:
                raise DiskQuotaUnavailable(
                    f"cannot give the sandbox a disk limit: {problem}. Fix: run Corral as root on the Docker "
                    "host (scripts/setup-host.sh sets it up), or start the server with --unsafe-no-disk-limit "
                    "to run sandboxes whose files can fill the host's disk (not recommended)."
                )
            if spec.copy_of is not None:
                device = disks.copy(spec.name, spec.copy_of)
            else:
                device = disks.create(spec.name, spec.size_bytes, spec.uid, spec.gid)
            try:
                self._client.volumes.create(
                    spec.name,
                    driver="local",
                    driver_opts={"type": "ext4", "device": str(device), "o": "nosuid,nodev"},
                    labels=dict(spec.labels),
                )
            except BaseException:
                disks.remove(spec.name)
                raise

        await self._run(f"create volume {spec.name}", create)

    async def remove_volume(self, name: str) -> None:
        def remove() -> None:
            try:
                self._client.api.remove_volume(name)
            except docker.errors.NotFound:
                pass
            # Only once Docker let go of it: a volume still mounted keeps its image attached.
            self._disks.remove(name)

        await self._run(f"remove volume {name}", remove)

    async def volume_dir(self, name: str) -> str | None:
        def inspect() -> str | None:
            try:
                info = self._client.api.inspect_volume(name)
            except docker.errors.NotFound:
                return None
            path = info.get("Mountpoint")
            if info.get("Driver") != "local" or not isinstance(path, str):
                return None
            # Not there: the engine is on another host. A disk-limited volume is only there while a
            # container has it mounted (an empty directory otherwise).
            return path if os.path.isdir(path) else None

        return await self._run(f"inspect volume {name}", inspect)

    async def list_volumes(self, label: str) -> list[VolumeInfo]:
        disks = self._disks

        def ls() -> list[VolumeInfo]:
            found = {
                v["Name"]: VolumeInfo(
                    v["Name"],
                    v.get("Labels") or {},
                    disks.size(v["Name"]),
                    _when(v.get("CreatedAt")),
                )
                for v in self._client.api.volumes(filters={"label": label}).get("Volumes") or []
            }
            known = {v["Name"] for v in self._client.api.volumes().get("Volumes") or []}
            for name in disks.names():
                if name not in known:  # an image whose volume is gone (a crash between the two)
                    found.setdefault(name, VolumeInfo(name, {}, disks.size(name), disks.created(name)))
            return sorted(found.values(), key=lambda v: v.name)

        return await self._run("list volumes", ls)

    # -- events ---------------------------------------------------------------------------------

    async def watch_container_events(self, label: str, handle: EventHandler) -> None:
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
                    event = await anyio.to_thread.run_sync(next_event, stream, abandon_on_cancel=True)
                    if event is None:
                        break
                    attrs = event.get("Actor", {}).get("Attributes", {}) or {}
                    await handle(str(event.get("Action", "")), attrs)
            finally:
                with contextlib.suppress(Exception):
                    stream.close()

    # -- networks and run-to-completion execs (helper containers) ----------------------------

    async def ensure_network(self, spec: NetworkSpec) -> NetworkInfo:
        """Create the bridge network unless it exists (safe against a concurrent create)."""

        def ensure() -> NetworkInfo:
            try:
                return _network_info(self._client.networks.get(spec.name))
            except docker.errors.NotFound:
                pass
            options = {}
            if spec.isolated:
                options["com.docker.network.bridge.enable_icc"] = "false"
            if spec.bridge:
                options["com.docker.network.bridge.name"] = spec.bridge
            try:
                self._client.networks.create(
                    spec.name,
                    driver="bridge",
                    internal=spec.internal,
                    options=options,
                    labels=dict(spec.labels),
                    check_duplicate=True,
                )
            except docker.errors.APIError as exc:
                if exc.status_code != 409:  # 409: created meanwhile by someone else
                    raise
            return _network_info(self._client.networks.get(spec.name))

        return await self._run(f"create network {spec.name}", ensure)

    async def remove_network(self, name: str) -> bool:
        def remove() -> bool:
            try:
                self._client.api.remove_network(name)
            except docker.errors.NotFound:
                return True
            except docker.errors.APIError as exc:
                if exc.status_code in (403, 409) or "active endpoints" in str(exc):
                    return False
                raise
            return True

        return await self._run(f"remove network {name}", remove)

    async def list_networks(self, label: str) -> list[NetworkInfo]:
        def ls() -> list[NetworkInfo]:
            found = self._client.api.networks(filters={"label": label})
            return [_network_info_attrs(attrs) for attrs in found]

        return await self._run("list networks", ls)

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
