"""Code interpreter contexts: one driver process per (language, context), one run at a time.

A Context owns its current Driver and the Run in flight; the driver's threads report output,
replies and exits to it (driver.DriverOwner). Output printed between runs is kept for the next.
"""

from __future__ import annotations

import json
import os
import threading
import time

from .capture import FLUSH_INTERVAL, PIPE_GRACE, STREAMS, Capture, Progress, Sink
from .driver import Driver, driver_argv
from .errors import Failure
from .rpc import Request

TYPE_CHECKING = False  # typing is not imported at run time: it costs the daemon ~1 MiB in every sandbox
if TYPE_CHECKING:
    from typing import Any

LANGUAGES = ("python", "javascript", "typescript", "bash")
MAX_CONTEXTS = 64
INTERRUPT_GRACE = 2.0
DRIVER_STARTUP_TIMEOUT = 30.0
MAX_VALUE = 1024 * 1024
MAX_IMAGES = 8 * 1024 * 1024
MAX_OUTPUTS = 32
OUTPUT_TEXT_KEYS = ("text", "html", "markdown", "svg", "latex")
OUTPUT_IMAGE_KEYS = ("png", "jpeg")
IDLE_OUTPUT = 64 * 1024  # output a context prints between runs, handed to the next run


class Run:
    """One code_run in flight."""

    def __init__(self, run_id: int, sink: Sink) -> None:
        self.run_id = run_id
        self.sink = sink
        self.reply: dict[str, Any] | None = None
        self.wake = threading.Event()
        self.interrupt_requested = False


class Context:
    def __init__(self, language: str, name: str) -> None:
        self.language = language
        self.name = name
        self.created = time.time()
        self.last_used: float | None = None
        self.runs = 0
        self.run_lock = threading.Lock()
        self.driver: Driver | None = None
        self._lock = threading.Lock()  # guards driver/run hand-over against the I/O threads
        self._run: Run | None = None
        self._idle = {stream: Capture(IDLE_OUTPUT) for stream in STREAMS}

    @property
    def label(self) -> str:
        return f"{self.language} context {self.name!r}"

    def busy(self) -> bool:
        return self._run is not None

    def info(self) -> dict[str, Any]:
        driver = self.driver
        alive = driver is not None and driver.alive()
        return {"language": self.language, "context": self.name,
                "pid": driver.pid if driver is not None and alive else None,
                "created": self.created, "last_used": self.last_used, "runs": self.runs,
                "busy": self.busy(), "alive": alive,
                "memory": session_memory(driver.pid) if driver is not None and alive else None}

    # Called from the driver's threads (driver.DriverOwner).
    def driver_output(self, driver: Driver, stream: str, data: bytes) -> None:
        with self._lock:
            if driver is not self.driver:
                return
            if self._run is not None:
                self._run.sink.add(stream, data)
            else:
                self._idle[stream].add(data)

    def driver_reply(self, driver: Driver, message: dict[str, Any]) -> None:
        with self._lock:
            run = self._run
            if driver is self.driver and run is not None and message.get("id") == run.run_id:
                run.reply = message
                run.wake.set()

    def driver_event(self, driver: Driver) -> None:
        run = self._run
        if run is not None:
            run.wake.set()

    # Called from request threads.
    def start_driver(self) -> Driver:
        env = dict(os.environ)
        env["CORRAL_CONTEXT"] = self.name
        if self.language not in ("javascript", "typescript"):
            env["PYTHONUNBUFFERED"] = "1"  # progress events, also for user subprocesses
        cwd = "/workspace" if os.path.isdir("/workspace") else None
        driver = Driver(self.language, driver_argv(self.language), cwd, env, self)
        with self._lock:
            self.driver = driver
        driver.start_threads()
        if not driver.wait_ready(DRIVER_STARTUP_TIMEOUT):
            driver.deliberate = True
            driver.kill()
            driver.drained.wait(PIPE_GRACE)
            with self._lock:
                self.driver = None
            detail = bytes(driver.stderr_head).decode("utf-8", "replace").strip()
            message = f"{self.language} driver did not start: {detail or 'no output'}"
            raise Failure("internal", message)
        with self._lock:
            self._idle = {stream: Capture(IDLE_OUTPUT) for stream in STREAMS}
        return driver

    def stop_driver(self) -> None:
        driver = self.driver
        if driver is not None:
            driver.deliberate = True
            driver.kill()

    def interrupt(self) -> bool:
        run = self._run
        if run is None:
            return False
        run.interrupt_requested = True
        run.wake.set()
        return True

    def run(self, req: Request, code: str, env: dict[str, str] | None, timeout: float, max_output: int,
            stream: bool) -> dict[str, Any]:
        started = time.monotonic()
        deadline = started + timeout
        if not self.run_lock.acquire(timeout=timeout):
            raise Failure("busy", f"{self.label} was busy with another run for the whole timeout")
        try:
            return self._run_locked(req, {"code": code, "env": env or {}}, started, deadline, max_output, stream)
        finally:
            self.last_used = time.time()
            self.run_lock.release()

    def _run_locked(
        self, req: Request, request: dict[str, Any], started: float, deadline: float, max_output: int, stream: bool
    ) -> dict[str, Any]:
        req.check_cancelled()
        outcome = {"timed_out": False, "interrupted": False, "restarted": False, "state_lost": False}
        driver = self.driver
        if driver is not None and not driver.alive():
            if not driver.deliberate:  # it died since the last run; say so once
                outcome["restarted"] = outcome["state_lost"] = True
            with self._lock:
                self.driver = None
        driver = self.driver
        if driver is None:
            driver = self.start_driver()
        self.runs += 1
        run = Run(self.runs, Sink(max_output, Progress(req, stream)))
        with self._lock:
            for name in STREAMS:
                text, _ = self._idle[name].result()
                if text:
                    run.sink.captures[name].add(text.encode("utf-8"))
            self._idle = {name: Capture(IDLE_OUTPUT) for name in STREAMS}
            self._run = run
        req.on_cancel(run.wake.set)
        try:
            error = self._drive(req, driver, run, request, deadline, outcome)
        finally:
            with self._lock:
                self._run = None
        req.check_cancelled()
        reply = run.reply or {}
        result: dict[str, Any] = dict(run.sink.fields())
        result.update(outcome)
        result.update(
            value=clean_value(reply.get("value")),
            outputs=clean_outputs(reply.get("outputs")),
            error=error or clean_error(reply.get("error")),
            duration=round(time.monotonic() - started, 4),
        )
        return result

    def _drive(
        self, req: Request, driver: Driver, run: Run, request: dict[str, Any], deadline: float,
        outcome: dict[str, bool]
    ) -> dict[str, str] | None:
        """Send the code, wait for the reply; interrupt, kill and restart as needed.

        Returns a synthesized error for runs that ended without a reply, else None.
        """
        if not driver.send({"id": run.run_id, **request}, deadline):
            if driver.alive():
                outcome["timed_out"] = True
                return self._replace_driver(driver, outcome, "did not accept the code in time")
        interrupted_at: float | None = None
        while True:
            run.wake.clear()
            if run.reply is not None:
                return None
            if not driver.alive():
                driver.drained.wait(PIPE_GRACE)
                if run.reply is not None:
                    return None
                return self._driver_gone(driver, outcome)
            now = time.monotonic()
            if now >= deadline and not outcome["timed_out"]:
                outcome["timed_out"] = True
            if interrupted_at is None and (outcome["timed_out"] or run.interrupt_requested
                                           or req.cancelled.is_set()):
                driver.interrupt()
                interrupted_at = now
                outcome["interrupted"] = True
            if interrupted_at is not None and now - interrupted_at >= INTERRUPT_GRACE:
                return self._replace_driver(driver, outcome, "ignored the interrupt")
            if interrupted_at is None:
                wait = min(FLUSH_INTERVAL, deadline - now)
            else:
                wait = min(FLUSH_INTERVAL, interrupted_at + INTERRUPT_GRACE - now)
            run.wake.wait(max(0.0, wait))
            run.sink.progress.maybe_flush()

    def _driver_gone(self, driver: Driver, outcome: dict[str, bool]) -> dict[str, str]:
        outcome["state_lost"] = True
        with self._lock:
            if self.driver is driver:
                self.driver = None
        if driver.deliberate:
            return {"ename": "ContextRestarted", "evalue": "the context was restarted or closed "
                    "while the code ran; its state is lost", "traceback": ""}
        code = driver.proc.returncode
        message = f"the {self.language} interpreter exited (status {code}) while running the code"
        return {"ename": "InterpreterExited", "evalue": message + "; its state is lost", "traceback": ""}

    def _replace_driver(self, driver: Driver, outcome: dict[str, bool], why: str) -> dict[str, str]:
        driver.deliberate = True
        driver.kill()
        driver.exited.wait(5.0)
        driver.drained.wait(PIPE_GRACE)
        with self._lock:
            if self.driver is driver:
                self.driver = None
        outcome["state_lost"] = True
        message = f"the {self.language} interpreter {why} and was killed; its state is lost"
        try:
            self.start_driver()
            outcome["restarted"] = True
            message += " (a fresh interpreter was started)"
        except Failure as failure:
            message += f" (restarting it failed: {failure.message})"
        ename = "Timeout" if outcome["timed_out"] else "Interrupted"
        return {"ename": ename, "evalue": message, "traceback": ""}


def clean_value(value: object) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else repr(value)
    if len(text) > MAX_VALUE:
        text = text[:MAX_VALUE] + "... [%s characters omitted]" % (len(text) - MAX_VALUE)
    return text


def clean_outputs(outputs: object) -> list[dict[str, Any]]:
    """A driver's rich outputs, type-checked and bounded (images share one budget)."""
    if not isinstance(outputs, list):
        return []
    kept: list[dict[str, Any]] = []
    image_total = 0
    for output in outputs[:MAX_OUTPUTS]:
        if not isinstance(output, dict):
            continue
        clean: dict[str, Any] = {"main": output.get("main") is True}
        for key in OUTPUT_TEXT_KEYS:
            if isinstance(output.get(key), str):
                clean[key] = output[key][:MAX_VALUE]
        for key in OUTPUT_IMAGE_KEYS:
            image = output.get(key)
            if isinstance(image, str) and image_total + len(image) <= MAX_IMAGES:
                clean[key] = image
                image_total += len(image)
        if "json" in output and _json_size(output["json"]) <= MAX_VALUE:
            clean["json"] = output["json"]
        if isinstance(output.get("chart"), dict) and _json_size(output["chart"]) <= MAX_VALUE:
            clean["chart"] = output["chart"]
        if len(clean) > 1:
            kept.append(clean)
    return kept


def _json_size(value: object) -> int:
    try:
        return len(json.dumps(value))
    except (ValueError, TypeError, RecursionError):
        return MAX_VALUE + 1  # unserializable or absurdly nested: dropped


def session_memory(session: int) -> int | None:
    """Resident bytes of every process in the session a driver leads (it and its children)."""
    total, found = 0, False
    page = os.sysconf("SC_PAGE_SIZE")
    try:
        pids = [name for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return None
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            if int(fields[3]) != session:  # after "pid (comm)": state ppid pgrp session
                continue
            with open(f"/proc/{pid}/statm", "rb") as f:
                total += int(f.read().split()[1]) * page
            found = True
        except (OSError, IndexError, ValueError):
            continue
    return total if found else None


def clean_error(error: object) -> dict[str, str] | None:
    if not isinstance(error, dict):
        return None
    return {key: str(error.get(key) or "")[:MAX_VALUE] for key in ("ename", "evalue", "traceback")}


class ContextManager:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._contexts: dict[tuple[str, str], Context] = {}

    def get(self, language: str, name: str, create: bool) -> Context:
        with self._lock:
            context = self._contexts.get((language, name))
            if context is None:
                if not create:
                    raise Failure("unknown_context", f"no {language} context named {name!r}")
                if len(self._contexts) >= MAX_CONTEXTS:
                    raise Failure("busy", f"too many contexts ({MAX_CONTEXTS}); close some first")
                context = Context(language, name)
                self._contexts[(language, name)] = context
            return context

    def remove(self, context: Context) -> None:
        with self._lock:
            if self._contexts.get((context.language, context.name)) is context:
                del self._contexts[(context.language, context.name)]

    def all(self) -> list[Context]:
        with self._lock:
            return sorted(self._contexts.values(), key=lambda c: (c.language, c.name))

    def kill_all(self) -> None:
        for context in self.all():
            context.stop_driver()
