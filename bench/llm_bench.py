"""The same work done with llm-sandbox (PyPI `llm-sandbox`), its Docker backend on this machine's engine.

Set-up, kept as close to Corral's sandboxes as llm-sandbox allows:
- the existing docker SDK client, the default image plus one symlink `python -> python3` (its
  Python handler runs `python FILE`, hard-coded, and the image only has `python3`), built locally;
- `runtime_configs`: runtime `corral-runsc` (gVisor, `--network=none`), `network_mode="none"`, the same
  memory / CPU / pids limits; containers labelled so the bench's reaper removes them;
- `skip_environment_setup=True`: otherwise it makes a venv and runs `pip install --upgrade pip` in
  every new sandbox (no network here, and not part of the comparison);
- everything blocking: call from a worker thread or the main thread, never the event loop.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from bench.corral_bench import STATE_CELLS, Ctx, versus
from bench.report import LATENCY_HEADERS, Results, Table
from bench.stats import Summary, ms
from corral.config import Limits

T = TypeVar("T")
ALIAS_TAG = "corral-bench/llm-sandbox-python:2"
WORKDIR = "/workspace"


def _ms(since: float) -> float:
    return (time.perf_counter() - since) * 1000


def alias_image(ctx: Ctx) -> str:
    """The default image plus `/usr/local/bin/python -> python3`, built offline."""
    dockerfile = f"FROM {ctx.image}\nUSER root\nRUN ln -sf /usr/bin/python3 /usr/local/bin/python\nUSER sandbox\n"
    ctx.docker.images.build(
        fileobj=io.BytesIO(dockerfile.encode()),
        tag=ALIAS_TAG,
        rm=True,
        forcerm=True,
        network_mode="none",
        labels=dict(ctx.bench_labels),
    )
    return ALIAS_TAG


def remove_alias_image(client: Any) -> None:
    try:
        client.images.remove(ALIAS_TAG, force=True)
    except Exception:  # not built, or already gone
        pass


def runtime_configs(ctx: Ctx, user: str | None) -> dict[str, Any]:
    limits = Limits()
    rc: dict[str, Any] = {
        "runtime": "corral-runsc",
        "network_mode": "none",
        "mem_limit": limits.memory_bytes,
        "memswap_limit": limits.memory_bytes,
        "nano_cpus": int(limits.cpus * 1e9),
        "pids_limit": limits.pids,
        "labels": dict(ctx.bench_labels),
        # `sleep infinity` as pid 1 ignores SIGTERM: without this, close() waits 10 s for
        # `docker stop`. Only affects tear-down, which is not timed.
        "stop_signal": "SIGKILL",
    }
    if user is not None:
        rc["user"] = user
    return rc


def with_deadline(fn: Callable[[], T], seconds: float, what: str) -> T:
    """Run a blocking call in a daemon thread; give up (raise TimeoutError) after `seconds`."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True, name=f"bench-{what}")
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise TimeoutError(f"{what} did not finish in {seconds:.0f} s")
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


def run_ok(session: Any, code: str, expect_last_line: str | None) -> float:
    t0 = time.perf_counter()
    out = session.run(code)
    elapsed = _ms(t0)
    lines = (out.stdout or "").split()
    if out.exit_code != 0 or (expect_last_line is not None and (not lines or lines[-1] != expect_last_line)):
        raise RuntimeError(
            f"llm-sandbox run returned exit {out.exit_code}, stdout {out.stdout!r:.200}, stderr {out.stderr!r:.300}"
        )
    return elapsed


def llm_phase(ctx: Ctx) -> None:
    res, cfg = ctx.results, ctx.cfg
    try:
        import llm_sandbox  # noqa: F401
        from llm_sandbox import SandboxBackend, SandboxSession
    except ImportError as exc:
        res.note(
            f"llm-sandbox is not installed ({exc}); install it with `.venv/bin/pip install "
            "'llm-sandbox[docker]'` to get the side-by-side figures."
        )
        res.failures.append("llm-sandbox: not installed, side-by-side comparison skipped")
        return

    def rtt_table() -> Table:
        return res.table("rtt", "run_code('print(1)') round trip", ["path", *LATENCY_HEADERS, "vs bare docker exec"])

    try:
        image = alias_image(ctx)
    except Exception as exc:
        res.fail("llm-sandbox: building the python->python3 alias image", exc)
        return

    def open_session(user: str | None) -> tuple[Any, float]:
        session = SandboxSession(
            backend=SandboxBackend.DOCKER,
            client=ctx.docker,
            image=image,
            lang="python",
            workdir=WORKDIR,
            keep_template=True,
            skip_environment_setup=True,
            runtime_configs=runtime_configs(ctx, user),
            default_timeout=60,
        )
        t0 = time.perf_counter()
        session.open()
        return session, _ms(t0)

    docker_p50 = res.summaries["rtt.docker"].p50 if "rtt.docker" in res.summaries else float("nan")
    opens: list[float] = []
    variants = (
        ("root", None, "llm-sandbox, user root (its default)"),
        ("uid1000", "1000:1000", "llm-sandbox, user 1000:1000 (as Corral)"),
    )
    for key, user, label in variants:
        try:
            session, opened = with_deadline(lambda user=user: open_session(user), 300, "llm-sandbox open")
        except Exception as exc:
            res.fail(f"{label}: open", exc)
            continue
        opens.append(opened)
        try:
            for _ in range(3):
                run_ok(session, "print(1)", "1")
            samples = [run_ok(session, "print(1)", "1") for _ in range(cfg.llm_calls)]
            if key == "root" and "state" in ctx.only:
                replay_sessions(session, ctx)
        except Exception as exc:
            if key == "root":
                res.fail(label, exc)
            else:  # a known limitation under gVisor: say exactly what happened, with evidence
                rtt_table().add(label, "0", "did not run (see note)")
                res.note(
                    f"{label} could not run code here: {' '.join(str(exc).split())[:300]} {_root_exec_caps(session)}"
                )
            continue
        finally:
            session.close()
        s = res.summaries[f"rtt.llm.{key}"] = Summary.of(samples)
        rtt_table().add_latency(label, s, versus(s.p50, docker_p50))
    rtt_table().note(
        "llm-sandbox `session.run(code)` per call: `mkdir -p` by `docker exec`, the code copied in with "
        "`put_archive`, (non-root user only) `chown` by `docker exec -u root`, then `python FILE` by "
        "`docker exec`: a fresh Python process each time."
    )
    if opens:
        o = Summary.of(opens)
        create_p50 = res.summaries["create.docker"].p50 if "create.docker" in res.summaries else float("nan")
        res.table("create", "create_sandbox (cold)", ["operation", *LATENCY_HEADERS, "vs bare docker"]).add_latency(
            "llm-sandbox SandboxSession.open()", o, versus(o.p50, create_p50)
        )
    if "state" in ctx.only:
        interactive_attempt(ctx, image)


def _root_exec_caps(session: Any) -> str:
    """Why llm-sandbox's `chown` (a `docker exec -u root`) can fail: the capabilities such an exec gets."""
    try:
        out = session.container.exec_run(["grep", "CapEff", "/proc/self/status"], user="root")
        caps = out.output.decode(errors="replace").split()[-1]
    except Exception as exc:
        return f"(could not read the capabilities of a root exec: {exc})"
    if caps.strip("0"):
        return f"A `docker exec -u root` in that container has capabilities {caps}."
    return (
        "Cause: a `docker exec -u root` into that gVisor container (started as uid 1000) has no "
        f"capabilities at all (CapEff {caps}, read in this run), so llm-sandbox's `chown` of the code file "
        "fails (it does not check), the file stays root-owned with mode 0600, and `python FILE` as uid "
        "1000 cannot open it. (Under runc the same exec gets Docker's default capabilities; checked by "
        "hand with `docker exec -u root ... grep CapEff /proc/self/status`, not in this run.)"
    )


def replay_sessions(session: Any, ctx: Ctx) -> None:
    """llm-sandbox's SandboxSession keeps no interpreter state between run() calls, so a user who needs
    `x` from call 1 in call k re-sends calls 1..k together (the replay workaround)."""
    res = ctx.results
    per_call: list[float] = []
    per_session: list[float] = []
    for _ in range(ctx.cfg.state_sessions):
        total = 0.0
        for k in range(1, len(STATE_CELLS) + 1):
            code = "\n".join(STATE_CELLS[:k])
            elapsed = run_ok(session, code, None if k == 1 else str(k))
            per_call.append(elapsed)
            total += elapsed
        per_session.append(total)
    res.summaries["state.llm.call"] = Summary.of(per_call)
    res.summaries["state.llm.session"] = Summary.of(per_session)
    table = res.table("state", "10-call stateful session", ["session kind", *LATENCY_HEADERS])
    table.add_latency("llm-sandbox replay (calls 1..k re-run), per call", res.summaries["state.llm.call"])
    table.add_latency("llm-sandbox replay, whole 10-call session", res.summaries["state.llm.session"])


def _gist(message: str) -> str:
    """The telling part of an llm-sandbox error: its first line plus pip's ERROR lines, if any."""
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    if not lines:
        return "(no message)"
    keep = [lines[0][:200], *[ln[:200] for ln in lines[1:] if ln.startswith("ERROR")][:3]]
    return " / ".join(keep)


def interactive_attempt(ctx: Ctx, image: str) -> None:
    """llm-sandbox's own answer to state is InteractiveSandboxSession (an IPython kernel in the sandbox).
    Try it exactly as documented, on the same image and runtime, and report what happens."""
    res = ctx.results
    table = res.table("state", "10-call stateful session", ["session kind", *LATENCY_HEADERS])
    try:
        from llm_sandbox import InteractiveSandboxSession, SandboxBackend
    except ImportError as exc:
        table.note(f"llm-sandbox InteractiveSandboxSession: not importable ({exc}).")
        return
    session = InteractiveSandboxSession(
        backend=SandboxBackend.DOCKER,
        client=ctx.docker,
        image=image,
        workdir=WORKDIR,
        keep_template=True,
        runtime_configs=runtime_configs(ctx, None),
        max_memory=None,
        timeout=60,
    )
    t0 = time.perf_counter()
    try:
        with_deadline(session.open, 300, "InteractiveSandboxSession.open")
    except Exception as exc:
        took = _ms(t0) / 1000
        message = _gist(str(exc))
        table.note(
            f"llm-sandbox `InteractiveSandboxSession` (its persistent IPython mode) could not start here: "
            f'`open()` failed after {took:.0f} s with {type(exc).__name__}: "{message}". It installs its '
            "kernel with `pip install ipython` inside the sandbox at every open, which needs a package "
            "index; "
            "these sandboxes have no network (and the image has no IPython). So the only llm-sandbox way to "
            "keep state measured here is the replay workaround."
        )
        res.extra["state.llm.interactive_ok"] = 0.0
        if session.container is not None:
            with_deadline(session.close, 120, "InteractiveSandboxSession.close")
        return
    try:
        per_call: list[float] = []
        for _ in range(ctx.cfg.state_sessions):
            for k, cell in enumerate(STATE_CELLS, start=1):
                per_call.append(run_ok(session, cell, None if k == 1 else str(k)))
        s = res.summaries["state.llm.interactive.call"] = Summary.of(per_call)
        table.add_latency("llm-sandbox InteractiveSandboxSession, per call", s)
        res.extra["state.llm.interactive_ok"] = 1.0
    except Exception as exc:  # its kernel started (the image has IPython now) but a cell did not answer
        table.note(
            f"llm-sandbox `InteractiveSandboxSession` opened but its cells failed after {len(per_call)} of them: "
            f'{type(exc).__name__}: "{_gist(str(exc))}".'
        )
        res.extra["state.llm.interactive_ok"] = 0.0
    finally:
        with_deadline(session.close, 120, "InteractiveSandboxSession.close")


def comparison(results: Results) -> None:
    """Corral vs llm-sandbox, per call, p50 against p50 (same run, same machine, same image and runtime)."""
    s = results.summaries
    llm_keys = [k for k in ("rtt.llm.root", "rtt.llm.uid1000") if k in s]
    if not llm_keys:
        return
    fastest = min(llm_keys, key=lambda k: s[k].p50)
    table = results.table(
        "vs_llm",
        "Corral vs llm-sandbox (p50 per call)",
        ["workload", "Corral in-process ms", "Corral stdio ms", "llm-sandbox ms", "llm-sandbox / Corral"],
        about=(
            "llm-sandbox figures use its faster variant in this run "
            f"({'user root' if fastest.endswith('root') else 'user 1000'}), so the ratio is the "
            "conservative one. "
            "Ratio = llm-sandbox p50 / Corral in-process p50 (stdio in brackets)."
        ),
    )

    def row(name: str, corral: str, llm: str) -> None:
        c, lm, st = s.get(corral), s.get(llm), s.get("rtt.stdio") if corral == "rtt.inproc" else None
        if c is None or lm is None:
            return
        ratio_text = f"{lm.p50 / c.p50:.1f}x" + (f" ({lm.p50 / st.p50:.1f}x)" if st else "")
        table.add(name, ms(c.p50), ms(st.p50) if st else "—", ms(lm.p50), ratio_text)

    row("print(1)", "rtt.inproc", fastest)
    row("10-call stateful session, per call (llm-sandbox: replay)", "state.corral.call", "state.llm.call")
    row("10-call stateful session, whole session", "state.corral.session", "state.llm.session")
