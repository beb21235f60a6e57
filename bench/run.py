"""Run every benchmark on this machine and write bench/RESULTS.md.

    python -m bench.run            # full run (make bench), a few minutes
    python -m bench.run --quick    # reduced counts, for a smoke test
    python -m bench.run --only rtt,files --output /tmp/r.md

Everything runs against a throwaway CORRAL_HOME; every container the run made (Corral sandboxes,
baseline containers, llm-sandbox containers) carries an owner label and is removed at the end, also
after a failure, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

import anyio
import docker

from bench.config import Config
from bench.corral_bench import Ctx, corral_phase
from bench.egress_bench import egress_checks, egress_phase
from bench.llm_bench import comparison, llm_phase, remove_alias_image
from bench.machine import machine_facts
from bench.report import Check, Results
from bench.stats import ms, ratio
from corral.config import DEFAULT_IMAGE, LABEL_NAMESPACE, RUNTIME_GVISOR, Settings
from corral.service.containers import home_label

HERE = Path(__file__).resolve().parent
ALL = ("rtt", "files", "create", "state", "concurrency", "pool", "power", "memory", "llm", "egress")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="reduced counts (smoke test); marked as such in the file")
    p.add_argument("--output", type=Path, default=HERE / "RESULTS.md", help="where to write (default: %(default)s)")
    p.add_argument("--only", default=",".join(ALL), help=f"comma-separated subset of: {', '.join(ALL)}")
    p.add_argument("--image", default=DEFAULT_IMAGE, help="sandbox image (default: %(default)s)")
    args = p.parse_args(argv)
    only = {x.strip() for x in args.only.split(",") if x.strip()}
    unknown = only - set(ALL)
    if unknown:
        p.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}; choose from {', '.join(ALL)}")
    args.only = frozenset(only)
    return args


def reap(client: docker.DockerClient, owners: list[str]) -> int:
    """Remove every container carrying one of this run's owner labels (the run's safety net)."""
    removed = 0
    for owner in owners:
        for container in client.containers.list(all=True, filters={"label": f"{LABEL_NAMESPACE}.owner={owner}"}):
            try:
                container.remove(force=True, v=True)
                removed += 1
            except docker.errors.NotFound:
                pass
    return removed


def reap_volumes(client: docker.DockerClient, owners: list[str], root: Path) -> int:
    """Remove the run's volumes (Corral's sandboxes have named ones, which removing a container
    leaves), then the disk images and loop devices of its data dirs."""
    from corral.sandbox_backend.docker.disks import LoopDisks

    removed = 0
    for owner in owners:
        for volume in client.volumes.list(filters={"label": f"{LABEL_NAMESPACE}.owner={owner}"}):
            try:
                volume.remove(force=True)
                removed += 1
            except docker.errors.APIError:
                pass
    for disks in root.glob("*/disks"):
        own = LoopDisks(disks)
        for name in own.names():
            own.remove(name)
    return removed


def reap_networks(client: docker.DockerClient, owners: list[str]) -> None:
    """Remove the run's networks and the iptables rules of its data dirs (the egress benchmark's)."""
    from corral.sandbox_backend.firewall import IptablesFirewall

    for owner in owners:
        for network in client.networks.list(filters={"label": f"{LABEL_NAMESPACE}.owner={owner}"}):
            try:
                network.remove()
            except docker.errors.APIError:
                pass
        try:
            anyio.run(IptablesFirewall().remove, owner)
        except Exception as exc:  # no iptables here: nothing was installed either
            print(f"bench: could not check iptables rules of {owner}: {exc}", file=sys.stderr)


def preflight(client: docker.DockerClient, image: str) -> str | None:
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        return f"image {image} is missing: build it with `.venv/bin/corral image build` (or `make setup`)"
    runtimes = set((client.info().get("Runtimes") or {}).keys())
    if RUNTIME_GVISOR not in runtimes:
        return f"the Docker runtime {RUNTIME_GVISOR} is not registered: run scripts/setup-host.sh as root"
    return None


def evaluate(results: Results) -> None:
    s, extra, checks = results.summaries, results.extra, results.checks
    inproc, stdio, bare = s.get("rtt.inproc"), s.get("rtt.stdio"), s.get("rtt.docker")
    if inproc:
        checks.append(
            Check(
                "run_code('print(1)') p50, in-process MCP client",
                "≤ 15 ms",
                f"{ms(inproc.p50)} ms",
                inproc.p50 <= 15,
            )
        )
    for label, cur in (("in-process", inproc), ("stdio", stdio)):
        if cur and bare:
            sp = bare.p50 / cur.p50
            checks.append(
                Check(
                    f"run_code('print(1)') p50 vs bare docker exec, {label}",
                    "≥ 5x faster",
                    f"{ratio(sp)} ({ms(cur.p50)} ms vs {ms(bare.p50)} ms)",
                    sp >= 5,
                )
            )
    files, cp = s.get("files.1 MiB.write+read"), s.get("files.1 MiB.docker")
    if files and cp:
        sp = cp.p50 / files.p50
        checks.append(
            Check(
                "1 MiB write_file + read_file p50 vs docker cp in + out",
                "≥ 5x faster",
                f"{ratio(sp)} ({ms(files.p50)} ms vs {ms(cp.p50)} ms)",
                sp >= 5,
            )
        )
    for key in sorted(k for k in extra if k.startswith("conc.") and k.endswith(".errors")):
        n = key.split(".")[1]
        errors, calls = int(extra[key]), int(extra.get(f"conc.{n}.calls", 0))
        checks.append(
            Check(
                f"N={n} sandboxes running code at once",
                "errors = 0",
                f"{errors} errors in {calls} calls",
                errors == 0,
            )
        )
    llm = [s[k] for k in ("rtt.llm.root", "rtt.llm.uid1000") if k in s]
    if llm:
        fast = min(llm, key=lambda x: x.p50)
        for label, cur in (("in-process", inproc), ("stdio", stdio)):
            if cur:
                r = fast.p50 / cur.p50
                checks.append(
                    Check(
                        f"print(1) per call vs llm-sandbox, Corral {label}",
                        "≥ 10x faster",
                        f"{ratio(r)} ({ms(cur.p50)} ms vs {ms(fast.p50)} ms)",
                        r >= 10,
                    )
                )
    elif "llm" in results.tables or any("llm-sandbox" in f for f in results.failures):
        checks.append(Check("print(1) per call vs llm-sandbox", "≥ 10x faster", "not measured (see failures)", None))
    lifecycle_checks(results)
    checks.extend(egress_checks(results))
    corral_state, llm_state = s.get("state.corral.call"), s.get("state.llm.call")
    if corral_state and llm_state:
        r = llm_state.p50 / corral_state.p50
        checks.append(
            Check(
                "10-call stateful session, per call vs llm-sandbox (replay)",
                "≥ 10x faster",
                f"{ratio(r)} ({ms(corral_state.p50)} ms vs {ms(llm_state.p50)} ms)",
                r >= 10,
            )
        )


def lifecycle_checks(results: Results) -> None:
    """Issue 10's targets: the warm pool, the cold path, idle memory."""
    s, extra, checks = results.summaries, results.extra, results.checks
    pool, first, docker_run = s.get("pool.create"), s.get("pool.first"), s.get("pool.docker")
    if pool and docker_run:
        checks.append(
            Check("create_sandbox p50 with the pool, MCP tool level", "≤ 50 ms", f"{ms(pool.p50)} ms", pool.p50 <= 50)
        )
        share = pool.p50 / docker_run.p50
        checks.append(
            Check(
                "create_sandbox p50 with the pool vs bare docker run -d",
                "≤ 0.15x",
                f"{share:.2f}x ({ms(pool.p50)} ms vs {ms(docker_run.p50)} ms)",
                share <= 0.15,
            )
        )
    if first:
        checks.append(
            Check(
                "create_sandbox + first run_code('print(1)') p50 with the pool",
                "≤ 80 ms",
                f"{ms(first.p50)} ms",
                first.p50 <= 80,
            )
        )
    cold, bare = s.get("create.corral"), s.get("create.docker")
    if cold and bare:
        share = cold.p50 / bare.p50
        checks.append(
            Check(
                "cold create_sandbox p50 vs bare docker run -d",
                "≤ 1.5x",
                f"{share:.2f}x ({ms(cold.p50)} ms vs {ms(bare.p50)} ms)",
                share <= 1.5,
            )
        )
    for key, what in (("pool", "pooled"), ("corral", "idle (agent + Python context)")):
        value = extra.get(f"memory.{key}.cgroup_mib")
        if value is not None:
            checks.append(Check(f"idle memory per {what} sandbox, cgroup", "≤ 40 MiB", f"{value:.1f} MiB", value <= 40))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = Config.quick_() if args.quick else Config.full()
    command = "python -m bench.run" + (" --quick" if args.quick else "")
    if args.only != frozenset(ALL):
        command += f" --only {','.join(sorted(args.only))}"
    results = Results(quick=cfg.quick, command=command)

    client = docker.from_env(timeout=300)
    problem = preflight(client, args.image)
    if problem:
        print(f"bench: cannot run: {problem}", file=sys.stderr)
        return 2

    root = Path(tempfile.mkdtemp(prefix="corral-bench-"))
    home_inproc, home_stdio, home_pool = root / "home-inproc", root / "home-stdio", root / "home-pool"
    home_egress = root / "home-egress"
    for home in (home_inproc, home_stdio, home_pool, home_egress):
        home.mkdir()
    owners = [home_label(Settings(home=h)) for h in (home_inproc, home_stdio, root, home_pool, home_egress)]
    ctx = Ctx(
        cfg=cfg,
        results=results,
        docker=client,
        image=args.image,
        home_inproc=home_inproc,
        home_stdio=home_stdio,
        home_pool=home_pool,
        bench_labels={f"{LABEL_NAMESPACE}.owner": owners[2], f"{LABEL_NAMESPACE}.bench": "true"},
        only=args.only,
    )

    def on_term(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    print(f"bench: {command}; CORRAL_HOME under {root}; containers labelled owner in {owners}", flush=True)
    started = time.monotonic()
    interrupted = False
    try:
        results.facts = machine_facts(client)
        anyio.run(corral_phase, ctx)
        if "egress" in args.only:
            try:
                anyio.run(egress_phase, ctx, home_egress)
            except Exception as exc:
                while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
                    exc = exc.exceptions[0]  # type: ignore[assignment]
                results.fail("egress proxy vs direct", exc)
        if "llm" in args.only:
            llm_phase(ctx)
        comparison(results)
        evaluate(results)
    except KeyboardInterrupt:
        interrupted = True
        print("\nbench: interrupted; cleaning up", file=sys.stderr, flush=True)
    finally:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # let the clean-up finish
        try:
            removed = reap(client, owners)
            volumes = reap_volumes(client, owners, root)
            reap_networks(client, owners)
            remove_alias_image(client)
            left = sum(
                len(client.containers.list(all=True, filters={"label": f"{LABEL_NAMESPACE}.owner={o}"})) for o in owners
            )
            left_volumes = sum(
                len(client.volumes.list(filters={"label": f"{LABEL_NAMESPACE}.owner={o}"})) for o in owners
            )
            print(
                f"bench: removed {removed} container(s) and {volumes} volume(s); {left} container(s) and "
                f"{left_volumes} volume(s) left with this run's labels",
                flush=True,
            )
        finally:
            shutil.rmtree(root, ignore_errors=True)
            client.close()
            signal.signal(signal.SIGINT, previous)
    results.elapsed_s = time.monotonic() - started
    if interrupted:
        print("bench: not writing results of an interrupted run", file=sys.stderr)
        return 130
    args.output.write_text(results.markdown())
    print("\n== Headline")
    for c in results.checks:
        met = "—" if c.ok is None else ("met" if c.ok else "NOT MET")
        print(f"  {c.what}: {c.measured} (target {c.target}: {met})")
    for f in results.failures:
        print(f"  failure: {f}", file=sys.stderr)
    print(f"bench: wrote {args.output} in {results.elapsed_s:.0f} s", flush=True)
    return 1 if results.failures else 0


if __name__ == "__main__":
    sys.exit(main())
