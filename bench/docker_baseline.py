"""Baselines done with the bare docker SDK, blocking (call these from a worker thread).

Each does the same work as the Corral figure it is compared with, against the same kind of
container (or the very same one), so the ratio shows what Corral's agent channel saves.
"""

from __future__ import annotations

import io
import os
import tarfile
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corral.config import RUNTIME_GVISOR, SANDBOX_USER, WORKDIR, Limits

PRINT1 = ["python3", "-c", "print(1)"]


def _ms(since: float) -> float:
    return (time.perf_counter() - since) * 1000


def exec_print1(container: Any) -> float:
    """One bare `docker exec python3 -c 'print(1)'` as the sandbox user; returns ms."""
    t0 = time.perf_counter()
    res = container.exec_run(PRINT1, user=SANDBOX_USER)
    elapsed = _ms(t0)
    if res.exit_code != 0 or res.output != b"1\n":
        raise RuntimeError(f"docker exec print(1): exit {res.exit_code}, output {res.output[:200]!r}")
    return elapsed


def exec_print1_samples(container: Any, n: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        exec_print1(container)
    return [exec_print1(container) for _ in range(n)]


def _tar_one(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.uid = info.gid = 1000
        info.mode = 0o644
        info.mtime = int(time.time())
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _untar_one(data: bytes) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        member = tar.next()
        if member is None:
            raise RuntimeError("docker cp: empty archive")
        f = tar.extractfile(member)
        if f is None:
            raise RuntimeError("docker cp: not a regular file")
        return f.read()


def cp_samples(container: Any, data: bytes, n: int, warmup: int) -> tuple[list[float], list[float]]:
    """`docker cp` in and out (put_archive / get_archive, tar built and read on the client side)."""
    name = f"bench-cp-{len(data)}.txt"
    put_ms: list[float] = []
    get_ms: list[float] = []
    for i in range(warmup + n):
        t0 = time.perf_counter()
        if not container.put_archive(WORKDIR, _tar_one(name, data)):
            raise RuntimeError("put_archive refused")
        t_put = _ms(t0)
        t0 = time.perf_counter()
        bits, _stat = container.get_archive(f"{WORKDIR}/{name}")
        back = _untar_one(b"".join(bits))
        t_get = _ms(t0)
        if back != data:
            raise RuntimeError(f"docker cp round trip changed the data ({len(back)} bytes back)")
        if i >= warmup:
            put_ms.append(t_put)
            get_ms.append(t_get)
    return put_ms, get_ms


def container_kwargs(image: str, labels: Mapping[str, str]) -> dict[str, Any]:
    """The options Corral gives a sandbox container (corral/service/sandboxes.py), for docker SDK create."""
    limits = Limits()
    return {
        "image": image,
        "command": ["sleep", "infinity"],
        "hostname": "sandbox",
        "labels": dict(labels),
        "runtime": RUNTIME_GVISOR,
        "user": SANDBOX_USER,
        "working_dir": WORKDIR,
        "environment": {"HOME": WORKDIR, "LANG": "C.UTF-8"},
        "mem_limit": limits.memory_bytes,
        "memswap_limit": limits.memory_bytes,
        "nano_cpus": int(limits.cpus * 1e9),
        "pids_limit": limits.pids,
        "network_mode": "none",
        "security_opt": ["no-new-privileges"],
        "cap_drop": ["ALL"],
        "detach": True,
    }


def create_start_samples(client: Any, image: str, labels: Mapping[str, str], n: int) -> tuple[list[float], list[float]]:
    """Bare `docker run -d` (create + start) of a sandbox-like container, then `docker rm -f`."""
    create_ms: list[float] = []
    remove_ms: list[float] = []
    for _ in range(n):
        t0 = time.perf_counter()
        container = client.containers.create(**container_kwargs(image, labels))
        container.start()
        create_ms.append(_ms(t0))
        t0 = time.perf_counter()
        container.remove(force=True, v=True)
        remove_ms.append(_ms(t0))
    return create_ms, remove_ms


@dataclass
class Burst:
    """N calls started at once, one per container, repeated for some rounds."""

    walls_ms: list[float]
    latencies_ms: list[float]
    errors: list[str]

    @property
    def calls(self) -> int:
        return len(self.latencies_ms) + len(self.errors)


def concurrent_exec(containers: Sequence[Any], rounds: int) -> Burst:
    burst = Burst([], [], [])
    with ThreadPoolExecutor(max_workers=len(containers)) as pool:
        for _ in range(rounds):
            t0 = time.perf_counter()
            futures = [pool.submit(exec_print1, c) for c in containers]
            for f in futures:
                try:
                    burst.latencies_ms.append(f.result())
                except Exception as exc:
                    burst.errors.append(f"{type(exc).__name__}: {exc}")
            burst.walls_ms.append(_ms(t0))
    return burst


# -- memory ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Memory:
    cgroup_usage: int  # bytes, memory.usage_in_bytes (v1) / memory.current (v2), as docker stats reads it
    cgroup_working_set: int  # usage minus inactive file cache: what `docker stats` shows
    host_pss: int  # proportional set size of the container's host processes (shim + runsc + stubs)
    host_rss: int
    host_procs: int


def cgroup_memory(container: Any) -> tuple[int, int]:
    stats = container.stats(stream=False, one_shot=True)
    mem = stats.get("memory_stats") or {}
    usage = int(mem.get("usage") or 0)
    detail = mem.get("stats") or {}
    inactive = int(detail.get("total_inactive_file", detail.get("inactive_file", 0)) or 0)
    return usage, max(usage - inactive, 0)


def _proc_table() -> dict[int, tuple[int, str]]:
    """pid -> (ppid, cmdline) for every process on the host."""
    table: dict[int, tuple[int, str]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            cmdline = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        table[int(entry.name)] = (ppid, cmdline)
    return table


def _smaps_rollup(pid: int) -> tuple[int, int]:
    pss = rss = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss = int(line.split()[1]) * 1024
            elif line.startswith("Rss:"):
                rss = int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return pss, rss


def host_memory(container_ids: Sequence[str]) -> dict[str, tuple[int, int, int]]:
    """container id -> (PSS, RSS, number of processes) of its host process tree.

    The tree is every process whose command line names the container id (containerd-shim,
    runsc-gofer, runsc-sandbox) plus all their descendants (gVisor's ptrace stubs).
    """
    table = _proc_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    result: dict[str, tuple[int, int, int]] = {}
    for cid in container_ids:
        roots = [pid for pid, (_, cmd) in table.items() if cid in cmd]
        seen: set[int] = set()
        stack = list(roots)
        while stack:
            pid = stack.pop()
            if pid in seen:
                continue
            seen.add(pid)
            stack += children.get(pid, [])
        pss = rss = 0
        for pid in seen:
            p, r = _smaps_rollup(pid)
            pss += p
            rss += r
        result[cid] = (pss, rss, len(seen))
    return result


def memory_of(containers: Sequence[Any]) -> list[Memory]:
    host = host_memory([c.id for c in containers])
    out = []
    for c in containers:
        usage, working = cgroup_memory(c)
        pss, rss, procs = host[c.id]
        out.append(Memory(usage, working, pss, rss, procs))
    return out
