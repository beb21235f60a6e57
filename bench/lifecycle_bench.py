"""Issue 10's figures: create from the warm pool, stop/start with memory and fork, idle memory of
pool members, each next to a bare-docker baseline measured in the same run."""

from __future__ import annotations

import time
from typing import Any

import anyio
import anyio.to_thread
from mcp import Client

from bench import docker_baseline as base
from bench.corral_bench import BenchError, Ctx, call, run_print1, timed, versus
from bench.report import LATENCY_HEADERS
from bench.stats import Summary
from corral.config import Settings
from corral.server import build_server
from corral.service.containers import LABEL_ROLE, home_label

POOL_SIZE = 2
STOP_GRACE = 2  # seconds docker stop waits before SIGKILL, for Corral's plain stop and the baseline alike


def _pool_members(ctx: Ctx, home: Any) -> list[Any]:
    labels = [f"dev.corral.owner={home_label(Settings(home=home))}", f"{LABEL_ROLE}=pool"]
    return list(ctx.docker.containers.list(filters={"label": labels}))


async def _pool_full(ctx: Ctx, home: Any, timeout: float = 300) -> list[Any]:
    """Wait until the pool holds POOL_SIZE running members whose Python context is warm."""
    from corral.service import open_services

    with anyio.fail_after(timeout):
        while True:
            async with open_services(Settings(home=home), serve=False, read_only=True) as view:
                ready = [m for m in await view.reconciler._pool.list() if m.ready]  # type: ignore[union-attr]
            if len(ready) >= POOL_SIZE:
                return await anyio.to_thread.run_sync(_pool_members, ctx, home)
            await anyio.sleep(0.5)


async def bench_pool(ctx: Ctx) -> None:
    cfg, res = ctx.cfg, ctx.results
    table = res.table(
        "pool",
        "create_sandbox from the warm pool",
        ["operation", *LATENCY_HEADERS, "vs bare docker run -d"],
        about=(
            f"A server with `CORRAL_POOL_SIZE={POOL_SIZE}`, through an in-process MCP client: `create_sandbox` "
            "with the default spec takes a started, agent-ready sandbox (its Python context warm) from the pool; "
            "the pool refills in the background and each sample waits until it is full again (not timed). "
            "Baseline: bare docker SDK create + start (`docker run -d`) of the same container, same run."
        ),
    )
    home = ctx.home_pool
    creates: list[float] = []
    both: list[float] = []
    settings = Settings(home=home, pool_size=POOL_SIZE, max_sandboxes=50)
    async with Client(build_server(settings), raise_exceptions=False) as client:
        members = await _pool_full(ctx, home)
        await _memory_rows(ctx, members)
        for _ in range(cfg.creates * 2):
            await _pool_full(ctx, home)
            elapsed, out = await timed(lambda: call(client, "create_sandbox"))
            first, _ = await run_print1(client, out["id"])
            creates.append(elapsed)
            both.append(elapsed + first)
            await call(client, "delete_sandbox", sandbox=out["id"])
    runs, _ = await anyio.to_thread.run_sync(
        base.create_start_samples, ctx.docker, ctx.image, ctx.bench_labels, cfg.creates
    )
    c, b, r = Summary.of(creates), Summary.of(both), Summary.of(runs)
    res.summaries["pool.create"], res.summaries["pool.first"], res.summaries["pool.docker"] = c, b, r
    table.add_latency("create_sandbox (pool)", c, versus(c.p50, r.p50))
    table.add_latency("create_sandbox + first run_code('print(1)') (pool)", b, versus(b.p50, r.p50))
    table.add_latency("bare docker run -d (baseline)", r, "baseline")


async def _memory_rows(ctx: Ctx, members: list[Any]) -> None:
    """Idle memory of the waiting pool members (agent daemon + a warm Python context)."""
    await anyio.sleep(ctx.cfg.settle_s)
    mems = await anyio.to_thread.run_sync(base.memory_of, members)
    cg = Summary.of([float(m.cgroup_working_set) for m in mems])
    ctx.results.extra["memory.pool.cgroup_mib"] = cg.mean / (1024 * 1024)
    ctx.pool_memory = (len(mems), cg, sum(m.host_pss for m in mems) / len(mems))


async def bench_power(ctx: Ctx) -> None:
    assert ctx.client is not None
    cfg, res, client = ctx.cfg, ctx.results, ctx.client
    table = res.table(
        "power",
        "stop / start with memory, fork",
        ["operation", *LATENCY_HEADERS, "vs bare docker"],
        about=(
            "One sandbox holding a Python variable and a running background process. `stop_sandbox` "
            "checkpoints its memory (gVisor) and stops it; `start_sandbox` restores it (the variable is "
            "checked after each cycle); `fork_sandbox` checkpoints, commits, restores a copy and the source. "
            f"Baseline: `docker stop -t {STOP_GRACE}` and `docker start` of a bare container with the same "
            "options running `sleep infinity` (PID 1 ignores SIGTERM, so docker stop waits the grace period), "
            "same run."
        ),
    )
    sandbox = (await call(client, "create_sandbox", name="bench-power"))["id"]
    stops: list[float] = []
    starts: list[float] = []
    forks: list[float] = []
    try:
        await call(client, "run_code", sandbox=sandbox, code="kept = 41")
        await call(client, "start_process", sandbox=sandbox, command="while true; do sleep 1; done")
        for _ in range(cfg.creates):
            t_stop, out = await timed(lambda: call(client, "stop_sandbox", sandbox=sandbox))
            if not out.get("memory_kept"):
                raise BenchError(f"stop_sandbox kept no memory: {out.get('reason')}")
            t_start, out = await timed(lambda: call(client, "start_sandbox", sandbox=sandbox))
            if not out.get("memory_kept"):
                raise BenchError(f"start_sandbox restored no memory: {out.get('reason')}")
            value = await call(client, "run_code", sandbox=sandbox, code="kept + 1")
            if value.get("value") != "42":
                raise BenchError(f"memory not kept across stop/start: {value!r:.300}")
            stops.append(t_stop)
            starts.append(t_start)
        for _ in range(cfg.creates):
            t_fork, out = await timed(lambda: call(client, "fork_sandbox", sandbox=sandbox))
            forks.append(t_fork)
            if not out.get("memory_kept"):
                raise BenchError(f"fork_sandbox kept no memory: {out.get('reason')}")
            await call(client, "delete_sandbox", sandbox=out["id"])
    finally:
        with anyio.CancelScope(shield=True):
            await call(client, "delete_sandbox", sandbox=sandbox)
    bare_stop, bare_start = await anyio.to_thread.run_sync(_docker_stop_start, ctx, cfg.creates)
    s, st, f = Summary.of(stops), Summary.of(starts), Summary.of(forks)
    ds, dst = Summary.of(bare_stop), Summary.of(bare_start)
    res.summaries.update({"power.stop": s, "power.start": st, "power.fork": f})
    table.add_latency("stop_sandbox (memory kept)", s, versus(s.p50, ds.p50))
    table.add_latency("start_sandbox (memory restored)", st, versus(st.p50, dst.p50))
    table.add_latency("fork_sandbox (memory kept)", f)
    table.add_latency(f"bare docker stop -t {STOP_GRACE} (baseline)", ds, "baseline")
    table.add_latency("bare docker start (baseline)", dst, "baseline")


def _docker_stop_start(ctx: Ctx, n: int) -> tuple[list[float], list[float]]:
    container = ctx.docker.containers.create(**base.container_kwargs(ctx.image, ctx.bench_labels))
    stops: list[float] = []
    starts: list[float] = []
    try:
        container.start()
        for _ in range(n):
            t0 = time.perf_counter()
            container.stop(timeout=STOP_GRACE)
            stops.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            container.start()
            starts.append((time.perf_counter() - t0) * 1000)
    finally:
        container.remove(force=True, v=True)
    return stops, starts
