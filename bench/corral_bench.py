"""Corral's own figures, through real MCP client sessions, next to bare-docker baselines."""

from __future__ import annotations

import base64
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import docker
from mcp import Client, StdioServerParameters
from mcp.types import TextContent

from bench import docker_baseline as base
from bench.config import Config
from bench.report import LATENCY_HEADERS, Results
from bench.stats import Summary, mib, ms, ratio
from corral.config import Settings
from corral.server import build_server

PRINT1 = "print(1)"
# A 10-call stateful session: call 1 defines x, every later call uses and changes it.
STATE_CELLS = ["x = 1"] + ["x = x + 1\nprint(x)"] * 9


class BenchError(RuntimeError):
    pass


@dataclass
class Ctx:
    cfg: Config
    results: Results
    docker: docker.DockerClient
    image: str
    home_inproc: Path
    home_stdio: Path
    home_pool: Path
    bench_labels: dict[str, str]  # for containers the bench makes itself (baselines, llm-sandbox)
    only: frozenset[str]
    client: Client | None = None
    sandbox: str | None = None
    container: Any = None
    conc_sandboxes: list[str] = field(default_factory=list)
    pool_memory: tuple[int, Summary, float] | None = None  # (members, cgroup bytes, host PSS bytes)


def versus(this_ms: float, base_ms: float) -> str:
    """How this p50 compares with a baseline p50 measured in the same run."""
    if not (this_ms > 0 and base_ms > 0):
        return "—"
    return f"{ratio(base_ms / this_ms)} faster" if base_ms >= this_ms else f"{ratio(this_ms / base_ms)} slower"


def _text(result: Any) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, TextContent))


async def call(client: Client, tool: str, **args: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    if result.is_error or result.structured_content is None:
        raise BenchError(f"{tool} failed: {_text(result)[:500]}")
    return dict(result.structured_content)


async def timed(fn: Callable[[], Awaitable[dict[str, Any]]]) -> tuple[float, dict[str, Any]]:
    t0 = time.perf_counter()
    out = await fn()
    return (time.perf_counter() - t0) * 1000, out


async def run_print1(client: Client, sandbox: str, context: str = "default") -> tuple[float, dict[str, Any]]:
    elapsed, out = await timed(lambda: call(client, "run_code", sandbox=sandbox, code=PRINT1, context=context))
    if out.get("stdout") != "1\n" or out.get("error"):
        raise BenchError(f"run_code print(1) returned {out!r:.300}")
    return elapsed, out


async def rtt_samples(client: Client, sandbox: str, n: int, warmup: int) -> tuple[list[float], list[float]]:
    """n timed run_code('print(1)') calls; also the agent-side run time each result reports."""
    for _ in range(warmup):
        await run_print1(client, sandbox)
    samples: list[float] = []
    inside: list[float] = []
    for _ in range(n):
        elapsed, out = await run_print1(client, sandbox)
        samples.append(elapsed)
        inside.append(float(out.get("duration_ms") or 0.0))
    return samples, inside


# -- 1. run_code round trip: in-process, stdio, bare docker exec ------------------------------------


async def bench_rtt(ctx: Ctx) -> None:
    assert ctx.client is not None and ctx.sandbox is not None
    cfg, res = ctx.cfg, ctx.results
    table = res.table(
        "rtt",
        "run_code('print(1)') round trip",
        ["path", *LATENCY_HEADERS, "vs bare docker exec"],
        about=(
            "One `run_code(code='print(1)')` tool call through an MCP client session, timed from "
            "`call_tool` to its result (stdout checked), into a warm sandbox. The baseline is the same "
            "work as a bare `docker exec` (docker SDK `exec_run(['python3','-c','print(1)'], "
            "user='1000:1000')`) against the very same sandbox container, in the same run."
        ),
    )
    inproc, inside = await rtt_samples(ctx.client, ctx.sandbox, cfg.rtt_calls, cfg.rtt_warmup)
    res.summaries["rtt.inproc"] = Summary.of(inproc)
    res.summaries["rtt.inside"] = Summary.of(inside)

    stdio: list[float] | None = None
    try:
        stdio = await stdio_rtt(ctx)
        res.summaries["rtt.stdio"] = Summary.of(stdio)
    except Exception as exc:
        res.fail("run_code round trip over stdio", exc)

    exec_ms = await anyio.to_thread.run_sync(
        base.exec_print1_samples, ctx.container, cfg.exec_calls, max(3, cfg.rtt_warmup // 4)
    )
    d = res.summaries["rtt.docker"] = Summary.of(exec_ms)
    s = res.summaries["rtt.inproc"]
    table.add_latency("Corral, in-process MCP client", s, versus(s.p50, d.p50))
    if stdio is not None:
        st = res.summaries["rtt.stdio"]
        table.add_latency("Corral, stdio MCP client (`corral serve`)", st, versus(st.p50, d.p50))
    table.add_latency("bare docker exec (baseline)", d, "baseline")
    table.note(
        f"Time spent inside the sandbox per call, as the agent reports it (`duration_ms`): p50 "
        f"{ms(res.summaries['rtt.inside'].p50)} ms; the rest is MCP, the audit record in SQLite and the "
        "agent channel."
    )


async def stdio_rtt(ctx: Ctx) -> list[float]:
    env = {**os.environ, "CORRAL_HOME": str(ctx.home_stdio)}
    env.pop("CORRAL_TOKEN", None)
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "corral", "serve", "--log-level", "WARNING"], env=env
    )
    with anyio.fail_after(600):
        async with Client(params) as client:
            sandbox = (await call(client, "create_sandbox", name="bench-stdio"))["id"]
            try:
                samples, _ = await rtt_samples(client, sandbox, ctx.cfg.rtt_calls, ctx.cfg.rtt_warmup)
            finally:
                with anyio.CancelScope(shield=True):
                    await call(client, "delete_sandbox", sandbox=sandbox)
    return samples


# -- 2. files -------------------------------------------------------------------------------------------


async def bench_files(ctx: Ctx) -> None:
    assert ctx.client is not None and ctx.sandbox is not None
    cfg, res, client = ctx.cfg, ctx.results, ctx.client
    table = res.table(
        "files",
        "write_file + read_file",
        ["operation", *LATENCY_HEADERS, "vs bare docker cp"],
        about=(
            "`write_file` then `read_file` of the same file through the in-process MCP client, content "
            "checked: 1 KiB as text (read raw); 1 MiB as binary, base64 in both MCP directions (read as a "
            "byte range: a plain read of a binary file returns only its description); between server and "
            "sandbox it crosses as a file in the sandbox's volumes (the agent volume's inbox in, "
            "/workspace/.corral/outbox out; payloads under 256 KiB go in binary frames). Baseline: "
            "`docker cp` of the same bytes into and "
            "out of the same container with the docker SDK (`put_archive` / `get_archive`, tar made and "
            "read client-side), interleaved with Corral's samples (one pair each in turn), so load on a "
            "shared machine weighs on both alike."
        ),
    )
    for size, label, n in ((1024, "1 KiB", cfg.files_small), (1024 * 1024, "1 MiB", cfg.files_big)):
        read_args: dict[str, Any]
        if size <= 64 * 1024:  # a small text file, sent and returned as text
            data = ("0123456789abcdef" * (size // 16))[:size].encode()
            args = {"content": data.decode()}
            read_args = {"raw": True}
            expect = {"encoding": "text", "content": data.decode()}
        else:  # binary, base64 both ways over MCP: the whole MiB travels
            data = bytes(range(256)) * (size // 256)
            args = {"content": base64.b64encode(data).decode(), "encoding": "base64"}
            read_args = {"byte_offset": 0, "byte_count": size}
            expect = {"encoding": "base64", "content": args["content"]}
        path = f"bench/file-{size}.bin"
        writes: list[float] = []
        reads: list[float] = []
        puts: list[float] = []
        gets: list[float] = []
        warmup = 3
        for i in range(warmup + n):
            t_w, out = await timed(
                lambda path=path, args=args: call(client, "write_file", sandbox=ctx.sandbox, path=path, **args)
            )
            if out.get("size") != size:
                raise BenchError(f"write_file wrote {out.get('size')} bytes, not {size}")
            t_r, back = await timed(
                lambda path=path, read_args=read_args: call(
                    client, "read_file", sandbox=ctx.sandbox, path=path, **read_args
                )
            )
            got = {k: back.get(k) for k in expect}
            if got != expect or back.get("truncated"):
                raise BenchError(
                    f"read_file returned {back.get('encoding')} content of {len(back.get('content') or '')} "
                    f"chars (truncated={back.get('truncated')}), not the {size} bytes written"
                )
            put, get = await anyio.to_thread.run_sync(base.cp_samples, ctx.container, data, 1, 0)
            if i >= warmup:
                writes.append(t_w)
                reads.append(t_r)
                puts += put
                gets += get
        w, r = Summary.of(writes), Summary.of(reads)
        wr = Summary.of([a + b for a, b in zip(writes, reads, strict=True)])
        p, g = Summary.of(puts), Summary.of(gets)
        pg = Summary.of([a + b for a, b in zip(puts, gets, strict=True)])
        res.summaries[f"files.{label}.write+read"] = wr
        res.summaries[f"files.{label}.docker"] = pg
        table.add_latency(f"write_file {label}", w, versus(w.p50, p.p50))
        table.add_latency(f"read_file {label}", r, versus(r.p50, g.p50))
        table.add_latency(f"write_file + read_file {label}", wr, versus(wr.p50, pg.p50))
        table.add_latency(f"docker cp in (put_archive) {label}", p, "baseline")
        table.add_latency(f"docker cp out (get_archive) {label}", g, "baseline")


# -- 3. create_sandbox (cold) -----------------------------------------------------------------------------


async def bench_create(ctx: Ctx) -> None:
    assert ctx.client is not None
    cfg, res, client = ctx.cfg, ctx.results, ctx.client
    table = res.table(
        "create",
        "create_sandbox (cold)",
        ["operation", *LATENCY_HEADERS, "vs bare docker"],
        about=(
            "Cold = a brand-new gVisor container each time (no pool), image already on the machine. "
            "`create_sandbox` returns once the container runs; the image has run in this server before, so "
            "its agent starts in the background and the first `run_code` waits for it, then starts a Python "
            "interpreter context (so that row holds the agent's start, and the create + first run_code row "
            "is the whole wait). Baseline: bare docker SDK create + start "
            "of a container with the same options (runtime corral-runsc, limits, user, no network) running "
            "`sleep infinity`, and `docker rm -f` of it."
        ),
    )
    creates: list[float] = []
    firsts: list[float] = []
    deletes: list[float] = []
    for _ in range(cfg.creates):
        t_c, out = await timed(lambda: call(client, "create_sandbox"))
        sandbox = out["id"]
        try:
            t_f, _ = await run_print1(client, sandbox)
        finally:
            with anyio.CancelScope(shield=True):
                t_d, _ = await timed(lambda sandbox=sandbox: call(client, "delete_sandbox", sandbox=sandbox))
        creates.append(t_c)
        firsts.append(t_f)
        deletes.append(t_d)
    runs, removes = await anyio.to_thread.run_sync(
        base.create_start_samples, ctx.docker, ctx.image, ctx.bench_labels, cfg.creates
    )
    c, f, dl = Summary.of(creates), Summary.of(firsts), Summary.of(deletes)
    r, rm = Summary.of(runs), Summary.of(removes)
    res.summaries["create.corral"] = c
    res.summaries["create.docker"] = r
    table.add_latency("create_sandbox", c, versus(c.p50, r.p50))
    table.add_latency("first run_code after create", f)
    table.add_latency(
        "create_sandbox + first run_code", Summary.of([a + b for a, b in zip(creates, firsts, strict=True)])
    )
    table.add_latency("delete_sandbox", dl, versus(dl.p50, rm.p50))
    table.add_latency("bare docker run -d (create + start)", r, "baseline")
    table.add_latency("bare docker rm -f", rm, "baseline")


# -- 4. a 10-call stateful session (compared with llm-sandbox later) -------------------------------------


async def bench_state(ctx: Ctx) -> None:
    assert ctx.client is not None and ctx.sandbox is not None
    res, client = ctx.results, ctx.client
    table = res.table(
        "state",
        "10-call stateful session",
        ["session kind", *LATENCY_HEADERS],
        about=(
            "Call 1 runs `x = 1`; calls 2-10 run `x = x + 1; print(x)` and must print 2…10. Corral keeps "
            "`x` in a persistent interpreter context; each session uses a new context, so its first call "
            "includes starting the interpreter."
        ),
    )
    per_call: list[float] = []
    per_session: list[float] = []
    for s in range(ctx.cfg.state_sessions):
        context = f"state-{s}"
        total = 0.0
        for k, cell in enumerate(STATE_CELLS, start=1):
            elapsed, out = await timed(
                lambda cell=cell, context=context: call(
                    client, "run_code", sandbox=ctx.sandbox, code=cell, context=context
                )
            )
            expected = "" if k == 1 else f"{k}\n"
            if out.get("stdout") != expected or out.get("error"):
                raise BenchError(f"stateful call {k} returned {out!r:.300}")
            per_call.append(elapsed)
            total += elapsed
        per_session.append(total)
        await call(client, "restart_context", sandbox=ctx.sandbox, context=context)
    res.summaries["state.corral.call"] = Summary.of(per_call)
    res.summaries["state.corral.session"] = Summary.of(per_session)
    table.add_latency("Corral run_code, per call", res.summaries["state.corral.call"])
    table.add_latency("Corral, whole 10-call session", res.summaries["state.corral.session"])


# -- 5. N sandboxes running code at once ------------------------------------------------------------------


async def create_many(ctx: Ctx, count: int, batch: int = 10) -> None:
    assert ctx.client is not None
    client = ctx.client
    while len(ctx.conc_sandboxes) < count:
        todo = min(batch, count - len(ctx.conc_sandboxes))
        made: list[str] = []

        async def one(made: list[str] = made) -> None:
            made.append((await call(client, "create_sandbox", labels={"bench": "concurrency"}))["id"])

        try:
            async with anyio.create_task_group() as tg:
                for _ in range(todo):
                    tg.start_soon(one)
        finally:
            ctx.conc_sandboxes += made


async def corral_burst(client: Client, sandboxes: list[str], rounds: int) -> base.Burst:
    burst = base.Burst([], [], [])

    async def one(sandbox: str) -> None:
        try:
            elapsed, _ = await run_print1(client, sandbox)
            burst.latencies_ms.append(elapsed)
        except Exception as exc:
            burst.errors.append(f"{sandbox}: {type(exc).__name__}: {exc}")

    for _ in range(rounds):
        t0 = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for sandbox in sandboxes:
                tg.start_soon(one, sandbox)
        burst.walls_ms.append((time.perf_counter() - t0) * 1000)
    return burst


def _burst_cells(b: base.Burst, versus_text: str) -> list[str]:
    ok = len(b.latencies_ms)
    wall = Summary.of(b.walls_ms)
    lat = Summary.of(b.latencies_ms) if ok else None
    throughput = ok / (sum(b.walls_ms) / 1000) if b.walls_ms else 0.0
    return [
        str(b.calls),
        str(len(b.errors)),
        ms(wall.p50),
        ms(lat.p50) if lat else "—",
        ms(lat.p95) if lat else "—",
        f"{throughput:.1f}",
        versus_text,
    ]


async def bench_concurrency(ctx: Ctx) -> None:
    assert ctx.client is not None
    cfg, res, client = ctx.cfg, ctx.results, ctx.client
    table = res.table(
        "concurrency",
        "N sandboxes running code at once",
        [
            "burst",
            "calls",
            "errors",
            "burst wall p50 ms",
            "per-call p50 ms",
            "per-call p95 ms",
            "throughput calls/s",
            "vs bare docker exec",
        ],
        about=(
            "N sandboxes, each sent `run_code('print(1)')` at the same moment through one in-process MCP "
            "client session; a burst ends when all N answered. The cold burst is the first code in each "
            f"new sandbox (interpreter start); then {cfg.rounds} warm bursts. Throughput = successful "
            "calls / summed burst wall time. Errors = failed calls or wrong output. Baseline: N bare "
            "`docker exec python3 -c 'print(1)'` at once (one thread each) into the same N containers. "
            f"The machine has {os.cpu_count()} cores."
        ),
    )
    for n in cfg.concurrency:
        await create_many(ctx, n)
        sandboxes = ctx.conc_sandboxes[:n]
        containers = await anyio.to_thread.run_sync(
            lambda sandboxes=sandboxes: [ctx.docker.containers.get(f"corral-{s}") for s in sandboxes]
        )
        cold = await corral_burst(client, sandboxes, 1)
        warm = await corral_burst(client, sandboxes, cfg.rounds)
        bare = await anyio.to_thread.run_sync(base.concurrent_exec, containers, cfg.rounds)
        res.extra[f"conc.{n}.errors"] = float(len(cold.errors) + len(warm.errors))
        res.extra[f"conc.{n}.calls"] = float(cold.calls + warm.calls)
        warm_p50 = Summary.of(warm.latencies_ms).p50 if warm.latencies_ms else float("nan")
        bare_p50 = Summary.of(bare.latencies_ms).p50 if bare.latencies_ms else float("nan")
        table.add(f"Corral N={n}, cold (first code)", *_burst_cells(cold, ""))
        table.add(f"Corral N={n}, warm", *_burst_cells(warm, versus(warm_p50, bare_p50)))
        table.add(f"bare docker exec N={n} (baseline)", *_burst_cells(bare, "baseline"))
        for err in (cold.errors + warm.errors)[:5]:
            table.note(f"N={n} error: {err[:300]}")


# -- 6. idle memory per sandbox -----------------------------------------------------------------------------


async def bench_memory(ctx: Ctx) -> None:
    cfg, res = ctx.cfg, ctx.results
    if not ctx.conc_sandboxes:
        await create_many(ctx, min(cfg.concurrency))
        assert ctx.client is not None
        await corral_burst(ctx.client, ctx.conc_sandboxes, 1)
    table = res.table(
        "memory",
        "Idle memory per sandbox",
        [
            "what",
            "containers",
            "cgroup MiB mean",
            "cgroup MiB p50",
            "cgroup MiB max",
            "host PSS MiB mean",
            "host RSS MiB mean",
            "host processes",
        ],
        about=(
            f"Read after {cfg.settle_s:.0f} s idle. **cgroup** = the container's memory cgroup usage minus "
            "inactive file cache, read with docker SDK `stats(stream=False)` (what `docker stats` shows). "
            "**host PSS / RSS** = summed from `/proc/<pid>/smaps_rollup` over the container's host process "
            "tree: containerd-shim, runsc-gofer, runsc-sandbox and gVisor's ptrace stub processes (PSS "
            "shares pages common to several sandboxes fairly between them; RSS counts them in full). The "
            "Corral sandboxes are those of the concurrency benchmark: each has its agent daemon and one "
            "Python interpreter context alive. The baseline is a bare runsc container running "
            "`sleep infinity`."
        ),
    )
    sandboxes = list(ctx.conc_sandboxes)
    bare_ids: list[str] = []

    def start_bare(k: int) -> list[str]:
        ids = []
        for _ in range(k):
            c = ctx.docker.containers.create(**base.container_kwargs(ctx.image, ctx.bench_labels))
            c.start()
            ids.append(c.id)
        return ids

    bare_ids = await anyio.to_thread.run_sync(start_bare, 3)
    await anyio.sleep(cfg.settle_s)

    def measure() -> tuple[list[base.Memory], list[base.Memory]]:
        corral = [ctx.docker.containers.get(f"corral-{s}") for s in sandboxes]
        bare = [ctx.docker.containers.get(i) for i in bare_ids]
        return base.memory_of(corral), base.memory_of(bare)

    try:
        corral_mem, bare_mem = await anyio.to_thread.run_sync(measure)
    finally:
        await anyio.to_thread.run_sync(
            lambda: [ctx.docker.api.remove_container(i, force=True, v=True) for i in bare_ids]
        )
    for label, mems in (
        ("Corral sandbox, idle (agent + Python context)", corral_mem),
        ("bare runsc container, `sleep infinity` (baseline)", bare_mem),
    ):
        cg = Summary.of([float(m.cgroup_working_set) for m in mems])
        pss = sum(m.host_pss for m in mems) / len(mems)
        rss = sum(m.host_rss for m in mems) / len(mems)
        procs = sum(m.host_procs for m in mems) / len(mems)
        table.add(label, str(len(mems)), mib(cg.mean), mib(cg.p50), mib(cg.max), mib(pss), mib(rss), f"{procs:.0f}")
        key = "corral" if label.startswith("Corral") else "bare"
        res.extra[f"memory.{key}.cgroup_mib"] = cg.mean / (1024 * 1024)
        res.extra[f"memory.{key}.pss_mib"] = pss / (1024 * 1024)
    if ctx.pool_memory is not None:
        count, cg, pss = ctx.pool_memory
        table.add("Corral pool member, idle (agent + warm Python context)", str(count), mib(cg.mean), mib(cg.p50),
                  mib(cg.max), mib(pss), "", "")


# -- the phase ----------------------------------------------------------------------------------------------

STEPS: list[tuple[str, str, Callable[[Ctx], Awaitable[None]]]] = [
    ("rtt", "run_code round trip", bench_rtt),
    ("files", "write_file + read_file", bench_files),
    ("create", "create_sandbox (cold)", bench_create),
    ("state", "10-call stateful session", bench_state),
    ("concurrency", "N sandboxes at once", bench_concurrency),
    ("pool", "create from the warm pool", lambda ctx: _lifecycle().bench_pool(ctx)),
    ("power", "stop / start with memory, fork", lambda ctx: _lifecycle().bench_power(ctx)),
    ("memory", "idle memory per sandbox", bench_memory),
]


def _lifecycle() -> Any:
    from bench import lifecycle_bench  # imports this module

    return lifecycle_bench


async def corral_phase(ctx: Ctx) -> None:
    steps = [s for s in STEPS if s[0] in ctx.only]
    if not steps:
        return
    max_sandboxes = max(ctx.cfg.concurrency) + ctx.cfg.creates + 10
    settings = Settings(home=ctx.home_inproc, max_sandboxes=max_sandboxes)
    async with Client(build_server(settings), raise_exceptions=False) as client:
        ctx.client = client
        ctx.sandbox = (await call(client, "create_sandbox", name="bench-main"))["id"]
        ctx.container = await anyio.to_thread.run_sync(ctx.docker.containers.get, f"corral-{ctx.sandbox}")
        for _key, what, fn in steps:
            try:
                await fn(ctx)
            except Exception as exc:
                ctx.results.fail(what, exc)
        ctx.client = None
