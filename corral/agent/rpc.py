"""Connections, requests and the op registry.

A Connection reads frames and runs each request on a worker thread of its own (at most
MAX_INFLIGHT at a time; workers are reused, see workers.py); the handler registered for its op
with `@op(name, *fields)` gets the shared agent state, the Request (events, cancellation) and the
validated Params, and returns the result fields or raises Failure. Frames are written under a lock;
a reply too big for a frame becomes `too_large`.
"""

from __future__ import annotations

import threading

from .errors import Failure, bad_request
from .inbox import load_staged, stage_reply
from .params import Params, short
from .util import log
from .wire import MAX_FRAME, FrameReader, ProtocolError, Stream, encode_frame
from .workers import run_soon

MAX_INFLIGHT = 256  # concurrent requests per connection

TYPE_CHECKING = False  # typing is not imported at run time: it costs the daemon ~1 MiB in every sandbox
if TYPE_CHECKING:
    from typing import Any, Callable
    # (agent state, request, params) -> result fields. The state is typed where it is defined
    # (state.Agent), which imports this module.
    Handler = Callable[[Any, "Request", Params], dict[str, Any] | None]

OPS: dict[str, tuple[Handler, frozenset[str]]] = {}


def op(name: str, *fields: str) -> Callable[[Handler], Handler]:
    """Register a request handler accepting exactly `fields`."""

    def register(handler: Handler) -> Handler:
        OPS[name] = (handler, frozenset(fields))
        return handler

    return register


def error_frame(rid: object, kind: str, message: str, field: str | None = None) -> dict[str, Any]:
    error = {"type": kind, "message": message}
    if field:
        error["field"] = field
    return {"id": rid, "event": "error", "error": error}


class Request:
    def __init__(self, conn: Connection, rid: int, op: object) -> None:
        self.conn = conn
        self.id = rid
        self.op = op
        self.cancelled = threading.Event()
        self.after: Callable[[], object] | None = None  # run once the terminal frame is out
        self._hooks: list[Callable[[], object]] = []
        self._lock = threading.Lock()
        self._done = False

    def on_cancel(self, hook: Callable[[], object]) -> None:
        with self._lock:
            if not self.cancelled.is_set():
                self._hooks.append(hook)
                return
        hook()

    def cancel(self) -> None:
        with self._lock:
            if self.cancelled.is_set():
                return
            self.cancelled.set()
            hooks, self._hooks = self._hooks, []
        for hook in hooks:
            try:
                hook()
            except Exception:
                import traceback  # only here: every idle daemon would carry it (~0.5 MiB)

                log("cancel hook failed:\n" + traceback.format_exc())

    def check_cancelled(self) -> None:
        if self.cancelled.is_set():
            raise Failure("cancelled", "request was cancelled")

    def event(self, kind: str, **fields: object) -> None:
        if self._done:
            return
        frame: dict[str, Any] = {"id": self.id, "event": kind}
        frame.update(fields)
        self.conn.send(frame, terminal=False)

    def finish_result(self, result: dict[str, Any]) -> None:
        self._done = True
        frame: dict[str, Any] = {"id": self.id, "event": "result"}
        frame.update(result)
        self.conn.send(frame, terminal=True)

    def finish_error(self, kind: str, message: str, field: str | None = None) -> None:
        self._done = True
        self.conn.send(error_frame(self.id, kind, message, field), terminal=True)


class Connection:
    """One host connection: a reader loop dispatching each request to its own thread."""

    def __init__(self, agent: object, stream: Stream, label: str) -> None:
        self.agent = agent
        self._stream = stream
        self._label = label
        self.label = label  # "relay N" (handed-over stdio), "connection N" (agent.sock), "stdio"
        self._write_lock = threading.Lock()
        self._lock = threading.Lock()
        self._active: dict[int, Request] = {}
        self._closed = False

    def close(self) -> None:
        """End the connection from our side: its reader stops, its relay sees the socket close."""
        self._stream.shutdown()

    def serve(self) -> None:
        reader = FrameReader(self._stream.recv, self._stream.recv_into)
        try:
            while True:
                msg = reader.read()
                if msg is None:
                    break
                self._dispatch(msg)
        except ProtocolError as exc:
            log(f"{self._label}: protocol error, dropping the connection: {exc}")
        except OSError as exc:
            log(f"{self._label}: connection error: {exc}")
        finally:
            self._close()

    def _close(self) -> None:
        with self._lock:
            self._closed = True
            active = list(self._active.values())
        for request in active:
            request.cancel()
        self._stream.shutdown()
        with self._write_lock:
            self._stream.close()

    def send(self, frame: dict[str, Any], terminal: bool) -> None:
        rid = frame.get("id")
        try:
            data = encode_frame(frame)
        except (TypeError, ValueError) as exc:
            if not terminal:
                return
            data = encode_frame(error_frame(rid, "internal", f"reply not encodable: {exc}"))
        if len(data) - 4 > MAX_FRAME:
            if not terminal:
                return
            message = f"reply of {len(data) - 4} bytes exceeds the {MAX_FRAME} byte frame limit"
            data = encode_frame(error_frame(rid, "too_large", message))
        with self._write_lock:
            if self._closed:
                return
            try:
                self._stream.write(data)
            except OSError as exc:
                log(f"{self._label}: write failed: {exc}")
                self._closed = True
                self._stream.shutdown()

    def _dispatch(self, msg: dict[str, Any]) -> None:
        rid = msg.get("id")
        if type(rid) is not int or rid < 0:
            raise ProtocolError("frame without a non-negative integer id")
        if msg.get("op") == "cancel":
            self._cancel(rid, msg)
            return
        request = Request(self, rid, msg.get("op"))
        with self._lock:
            if rid in self._active:
                problem: tuple[str, str] | None = ("bad_request", f"request id {rid} is already in use")
            elif len(self._active) >= MAX_INFLIGHT:
                problem = ("busy", f"more than {MAX_INFLIGHT} concurrent requests")
            else:
                problem = None
                self._active[rid] = request
        if problem is not None:
            self.send(error_frame(rid, problem[0], problem[1]), terminal=True)
            return
        try:
            run_soon(lambda: self._execute(request, msg), name=f"request-{rid}")
        except RuntimeError as exc:
            self._forget(rid)
            self.send(error_frame(rid, "busy", f"cannot start a thread: {exc}"), terminal=True)

    def _cancel(self, rid: int, msg: dict[str, Any]) -> None:
        try:
            target = Params("cancel", msg, frozenset(["target"])).integer("target", lo=0)
        except Failure as failure:
            self.send(error_frame(rid, failure.kind, failure.message), terminal=True)
            return
        with self._lock:
            request = self._active.get(target)
        if request is not None:
            request.cancel()
        self.send({"id": rid, "event": "result", "found": request is not None}, terminal=True)

    def _forget(self, rid: int) -> None:
        with self._lock:
            self._active.pop(rid, None)

    def _execute(self, request: Request, msg: dict[str, Any]) -> None:
        try:
            entry = OPS.get(request.op) if isinstance(request.op, str) else None
            if entry is None or not isinstance(request.op, str):
                raise bad_request(f"unknown op {short(request.op)}")
            handler, fields = entry
            outbox = msg.pop("outbox", None)
            if "staged" in msg:
                msg = load_staged(msg, fields)
            result = handler(self.agent, request, Params(request.op, msg, fields)) or {}
            request.finish_result(stage_reply(result, outbox) if outbox is not None else result)
        except Failure as failure:
            request.finish_error(failure.kind, failure.message, failure.field)
        except Exception as exc:
            import traceback

            log(f"request {request.id} ({request.op}) failed:\n{traceback.format_exc()}")
            request.finish_error("internal", f"{type(exc).__name__}: {exc}")
        finally:
            self._forget(request.id)
        if request.after is not None:
            request.after()
