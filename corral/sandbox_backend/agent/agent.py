#!/usr/bin/env python3
"""Corral in-sandbox agent: stdlib only, Python >= 3.8.

The protocol, the modes and the driver interface are specified in docs/agent-protocol.md.
Modes: relay (default), daemon, serve-stdio, tcp-relay HOST PORT, version, and the internal
proc-waiter DIR used for background processes.
"""

from __future__ import annotations

import base64
import codecs
import errno
import fcntl
import hashlib
import json
import math
import os
import re
import secrets
import selectors
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import threading
import time
import traceback

PROTOCOL = 1
MAX_FRAME = 16 * 1024 * 1024
DEFAULT_AGENT_DIR = "/tmp/.corral"
HERE = os.path.dirname(os.path.abspath(__file__))
AGENT_FILE = os.path.join(HERE, os.path.basename(__file__))

FLUSH_INTERVAL = 0.25  # minimum spacing of `output` events per request
EVENT_CHUNK = 64 * 1024  # per stream per event; the rest is only counted (events are progress)
MAX_TIMEOUT = 7 * 24 * 3600.0
DEFAULT_TIMEOUT = 60.0
MAX_OUTPUT = 1024 * 1024  # per stream; keeps the worst-case JSON of a result under MAX_FRAME
DEFAULT_OUTPUT = 64 * 1024
MAX_READ = 8 * 1024 * 1024  # base64 of this still fits in one frame
DEFAULT_READ = 1024 * 1024
MAX_INFLIGHT = 256  # concurrent requests per connection
MAX_CONTEXTS = 64
PIPE_GRACE = 1.0  # how long to keep reading pipes after the process is gone
INTERRUPT_GRACE = 2.0
DRIVER_STARTUP_TIMEOUT = 30.0
MAX_DRIVER_LINE = 48 * 1024 * 1024
MAX_VALUE = 1024 * 1024
MAX_IMAGES = 8 * 1024 * 1024
IDLE_OUTPUT = 64 * 1024  # output a context prints between runs, handed to the next run
STDIN_WRITE_TIMEOUT = 10.0
MAX_PROC_WAIT = 60.0
DAEMON_LOCK_WAIT = 10.0
DAEMON_START_TIMEOUT = 20.0
LOG_ROTATE_BYTES = 1024 * 1024

STREAMS = ("stdout", "stderr")
LANGUAGES = ("python", "javascript", "bash")
NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_HEADER = struct.Struct(">I")


def log(message: str) -> None:
    try:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        sys.stderr.write(f"{stamp} corral-agent[{os.getpid()}]: {message}\n")
        sys.stderr.flush()
    except Exception:
        pass


# --------------------------------------------------------------------------------------------
# Version: a hash of the bundle (agent.py + drivers/*). corral/sandbox_backend/agent/__init__.py
# computes the same digest on the host; the bundle also ships it as VERSION.


def bundle_files(root: str) -> list:
    names = ["agent.py"]
    drivers = os.path.join(root, "drivers")
    if os.path.isdir(drivers):
        for name in sorted(os.listdir(drivers)):
            if _is_bundled_driver(name) and os.path.isfile(os.path.join(drivers, name)):
                names.append("drivers/" + name)
    return names


def _is_bundled_driver(name: str) -> bool:
    return not name.startswith((".", "_")) and not name.endswith((".pyc", "~"))


def bundle_digest(root: str) -> str:
    digest = hashlib.sha256()
    for name in bundle_files(root):
        with open(os.path.join(root, name), "rb") as f:
            data = f.read()
        digest.update(name.encode("utf-8") + b"\0" + str(len(data)).encode("ascii") + b"\0")
        digest.update(data)
    return digest.hexdigest()[:16]


_version_cache: list = []


def agent_version() -> str:
    if not _version_cache:
        version = ""
        try:
            with open(os.path.join(HERE, "VERSION")) as f:
                version = f.read().strip()
        except OSError:
            pass
        _version_cache.append(version or bundle_digest(HERE))
    return _version_cache[0]


def agent_dir() -> str:
    return os.environ.get("CORRAL_AGENT_DIR") or DEFAULT_AGENT_DIR


def drivers_dir() -> str:
    # Tests substitute fake drivers; production always uses the bundled ones.
    return os.environ.get("CORRAL_AGENT_DRIVERS") or os.path.join(HERE, "drivers")


def ensure_private_dir(path: str) -> str:
    """Create `path` (mode 0700) or check that an existing one is ours and private."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise RuntimeError(f"{path} is not a directory")
    if st.st_uid != os.getuid():
        raise RuntimeError(f"{path} belongs to uid {st.st_uid}, not to us ({os.getuid()})")
    if stat.S_IMODE(st.st_mode) & 0o077:
        os.chmod(path, 0o700)
    return path


# --------------------------------------------------------------------------------------------
# Framing


class ProtocolError(Exception):
    pass


def encode_frame(obj: dict) -> bytes:
    # Lone surrogates (undecodable file names) become JSON \udcXX escapes via backslashreplace.
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    body = text.encode("utf-8", "backslashreplace")
    return _HEADER.pack(len(body)) + body


class FrameReader:
    def __init__(self, recv) -> None:
        self._recv = recv
        self._buf = bytearray()

    def _fill(self, n: int) -> bool:
        while len(self._buf) < n:
            chunk = self._recv(max(65536, min(n - len(self._buf), 1 << 20)))
            if not chunk:
                return False
            self._buf += chunk
        return True

    def read(self):
        """Next frame as a dict, or None on a clean end of stream."""
        if not self._fill(4):
            if self._buf:
                raise ProtocolError("stream ended inside a frame header")
            return None
        (length,) = _HEADER.unpack(bytes(self._buf[:4]))
        if length > MAX_FRAME:
            raise ProtocolError(f"frame of {length} bytes exceeds the {MAX_FRAME} byte limit")
        if not self._fill(4 + length):
            raise ProtocolError("stream ended inside a frame")
        body = bytes(self._buf[4 : 4 + length])
        del self._buf[: 4 + length]
        try:
            msg = json.loads(body.decode("utf-8"))
        except ValueError as exc:
            raise ProtocolError(f"frame is not UTF-8 JSON: {exc}") from None
        if not isinstance(msg, dict):
            raise ProtocolError("frame is not a JSON object")
        return msg


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class SocketStream:
    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def recv(self, n: int) -> bytes:
        return self._sock.recv(n)

    def write(self, data: bytes) -> None:
        self._sock.sendall(data)

    def shutdown(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def close(self) -> None:
        self._sock.close()


class FdStream:
    def __init__(self, rfd: int, wfd: int) -> None:
        self._rfd = rfd
        self._wfd = wfd

    def recv(self, n: int) -> bytes:
        return os.read(self._rfd, n)

    def write(self, data: bytes) -> None:
        write_all(self._wfd, data)

    def shutdown(self) -> None:
        pass

    def close(self) -> None:
        for fd in (self._rfd, self._wfd):
            try:
                os.close(fd)
            except OSError:
                pass


# --------------------------------------------------------------------------------------------
# Errors and request validation


class Failure(Exception):
    """An error reply: `kind` is the protocol error type."""

    def __init__(self, kind: str, message: str) -> None:
        Exception.__init__(self, message)
        self.kind = kind
        self.message = message


def bad_request(message: str) -> Failure:
    return Failure("bad_request", message)


_ERRNO_KINDS = {
    errno.ENOENT: "not_found",
    errno.EISDIR: "is_a_directory",
    errno.ENOTDIR: "not_a_directory",
    errno.EACCES: "permission",
    errno.EPERM: "permission",
    errno.EROFS: "permission",
    errno.EEXIST: "exists",
    errno.ENAMETOOLONG: "bad_request",
}


def os_failure(exc: OSError, what: object = None) -> Failure:
    kind = _ERRNO_KINDS.get(exc.errno or 0, "io_error")
    subject = what if what is not None else exc.filename
    reason = exc.strerror or str(exc)
    return Failure(kind, f"{subject}: {reason}" if subject is not None else reason)


_MISSING = object()


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


class Params:
    """Typed access to a request's fields; absent and null fields take the default."""

    def __init__(self, op: str, msg: dict, allowed: frozenset) -> None:
        unknown = sorted(k for k in msg if k not in allowed and k not in ("id", "op"))
        if unknown:
            names = ", ".join(_short(k, 40) for k in unknown[:10])
            raise bad_request(f"unknown field(s) for op {op}: {names}")
        self._msg = msg

    def _get(self, name: str, default: object):
        value = self._msg.get(name)
        if value is None and default is _MISSING:
            raise bad_request(f"missing required field '{name}'")
        return value

    def string(self, name, default=_MISSING, max_len=65536, allow_empty=False):
        value = self._get(name, default)
        if value is None:
            return default
        if not isinstance(value, str):
            raise bad_request(f"'{name}' must be a string, got {type(value).__name__}")
        if not value and not allow_empty:
            raise bad_request(f"'{name}' must not be empty")
        if len(value) > max_len:
            raise bad_request(f"'{name}' is longer than {max_len} characters")
        return value

    def path(self, name, default=_MISSING):
        value = self.string(name, default, max_len=4096)
        if value is not None and "\0" in value:
            raise bad_request(f"'{name}' contains a NUL character")
        return value

    def integer(self, name, default=_MISSING, lo=None, hi=None):
        value = self._get(name, default)
        if value is None:
            return default
        if type(value) is not int:
            raise bad_request(f"'{name}' must be an integer, got {type(value).__name__}")
        _check_range(name, value, lo, hi)
        return value

    def number(self, name, default=_MISSING, lo=None, hi=None, lo_exclusive=False):
        value = self._get(name, default)
        if value is None:
            return default
        if type(value) not in (int, float) or not math.isfinite(value):
            raise bad_request(f"'{name}' must be a finite number, got {_short(value)}")
        if lo_exclusive and lo is not None and value <= lo:
            raise bad_request(f"'{name}' must be greater than {lo}, got {value}")
        _check_range(name, value, None if lo_exclusive else lo, hi)
        return float(value)

    def boolean(self, name, default=_MISSING):
        value = self._get(name, default)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise bad_request(f"'{name}' must be true or false, got {_short(value)}")
        return value

    def choice(self, name, options, default=_MISSING):
        value = self.string(name, default, max_len=64)
        if value is not None and value not in options:
            allowed = "/".join(options)
            raise bad_request(f"'{name}' must be one of {allowed}, got {_short(value)}")
        return value

    def name(self, name):
        value = self.string(name, max_len=64)
        if not NAME_RE.match(value):
            raise bad_request(f"'{name}' must match [A-Za-z0-9_.-]{{1,64}}, got {_short(value)}")
        return value

    def b64(self, name, default=_MISSING, max_bytes=MAX_FRAME):
        value = self.string(name, default, max_len=MAX_FRAME, allow_empty=True)
        if value is None:
            return default
        try:
            data = base64.b64decode(value.encode("ascii"), validate=True)
        except (ValueError, UnicodeEncodeError):
            raise bad_request(f"'{name}' is not valid base64") from None
        if len(data) > max_bytes:
            raise bad_request(f"'{name}' decodes to more than {max_bytes} bytes")
        return data

    def str_list(self, name, default=_MISSING):
        value = self._get(name, default)
        if value is None:
            return default
        if not isinstance(value, list) or not value:
            raise bad_request(f"'{name}' must be a non-empty list of strings")
        for item in value:
            if not isinstance(item, str) or "\0" in item:
                raise bad_request(f"'{name}' must contain only strings without NUL characters")
        if len(value) > 100000:
            raise bad_request(f"'{name}' has too many items")
        return list(value)

    def environment(self, name):
        value = self._get(name, None)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise bad_request(f"'{name}' must be an object of string values")
        for key, item in value.items():
            if not key or "=" in key or "\0" in key:
                raise bad_request(f"'{name}' has an invalid variable name {_short(key)}")
            if not isinstance(item, str) or "\0" in item:
                raise bad_request(f"'{name}' value for {_short(key)} must be a string without NUL")
        return dict(value)

    def signal_number(self, name, default=_MISSING):
        value = self._get(name, default)
        if value is None:
            value = default
        return parse_signal(value)


def _check_range(name, value, lo, hi):
    if lo is not None and value < lo:
        raise bad_request(f"'{name}' must be >= {lo}, got {value}")
    if hi is not None and value > hi:
        raise bad_request(f"'{name}' must be <= {hi}, got {value}")


def parse_signal(value) -> int:
    if type(value) is int:
        if 1 <= value <= 64:
            return value
        raise bad_request(f"signal number must be 1..64, got {value}")
    if isinstance(value, str) and value:
        name = value.upper()
        if not name.startswith("SIG"):
            name = "SIG" + name
        number = getattr(signal.Signals, name, None) if re.match(r"^SIG[A-Z0-9]+$", name) else None
        if isinstance(number, signal.Signals):
            return int(number)
    raise bad_request(f"unknown signal {_short(value)}")


# --------------------------------------------------------------------------------------------
# Requests and connections


class Request:
    def __init__(self, conn: Connection, rid: int, op: object) -> None:
        self.conn = conn
        self.id = rid
        self.op = op
        self.cancelled = threading.Event()
        self.after = None  # run once the terminal frame is out (shutdown)
        self._hooks: list = []
        self._lock = threading.Lock()
        self._done = False

    def on_cancel(self, hook) -> None:
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
                log("cancel hook failed:\n" + traceback.format_exc())

    def check_cancelled(self) -> None:
        if self.cancelled.is_set():
            raise Failure("cancelled", "request was cancelled")

    def event(self, kind: str, **fields) -> None:
        if self._done:
            return
        frame = {"id": self.id, "event": kind}
        frame.update(fields)
        self.conn.send(frame, terminal=False)

    def finish_result(self, result: dict) -> None:
        self._done = True
        frame = {"id": self.id, "event": "result"}
        frame.update(result)
        self.conn.send(frame, terminal=True)

    def finish_error(self, kind: str, message: str) -> None:
        self._done = True
        self.conn.send(error_frame(self.id, kind, message), terminal=True)


def error_frame(rid: int, kind: str, message: str) -> dict:
    return {"id": rid, "event": "error", "error": {"type": kind, "message": message}}


OPS: dict = {}


def op(name: str, *fields: str):
    """Register a request handler accepting exactly `fields`."""

    def register(handler):
        OPS[name] = (handler, frozenset(fields))
        return handler

    return register


class Connection:
    """One host connection: a reader loop dispatching each request to its own thread."""

    def __init__(self, agent: Agent, stream, label: str) -> None:
        self.agent = agent
        self._stream = stream
        self._label = label
        self._write_lock = threading.Lock()
        self._lock = threading.Lock()
        self._active: dict = {}
        self._closed = False

    def serve(self) -> None:
        reader = FrameReader(self._stream.recv)
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

    def send(self, frame: dict, terminal: bool) -> None:
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

    def _dispatch(self, msg: dict) -> None:
        rid = msg.get("id")
        if type(rid) is not int or rid < 0:
            raise ProtocolError("frame without a non-negative integer id")
        if msg.get("op") == "cancel":
            self._cancel(rid, msg)
            return
        request = Request(self, rid, msg.get("op"))
        with self._lock:
            if rid in self._active:
                problem = "bad_request", f"request id {rid} is already in use"
            elif len(self._active) >= MAX_INFLIGHT:
                problem = "busy", f"more than {MAX_INFLIGHT} concurrent requests"
            else:
                problem = None
                self._active[rid] = request
        if problem is not None:
            self.send(error_frame(rid, problem[0], problem[1]), terminal=True)
            return
        try:
            worker = threading.Thread(target=self._execute, args=(request, msg), daemon=True)
            worker.name = f"request-{rid}"
            worker.start()
        except RuntimeError as exc:
            self._forget(rid)
            self.send(error_frame(rid, "busy", f"cannot start a thread: {exc}"), terminal=True)

    def _cancel(self, rid: int, msg: dict) -> None:
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

    def _execute(self, request: Request, msg: dict) -> None:
        try:
            entry = OPS.get(request.op) if isinstance(request.op, str) else None
            if entry is None:
                raise bad_request(f"unknown op {_short(request.op)}")
            handler, fields = entry
            result = handler(self.agent, request, Params(request.op, msg, fields))
            request.finish_result(result or {})
        except Failure as failure:
            request.finish_error(failure.kind, failure.message)
        except Exception as exc:
            log(f"request {request.id} ({request.op}) failed:\n{traceback.format_exc()}")
            request.finish_error("internal", f"{type(exc).__name__}: {exc}")
        finally:
            self._forget(request.id)
        if request.after is not None:
            request.after()


# --------------------------------------------------------------------------------------------
# The agent: state shared by all connections


class Agent:
    def __init__(self, directory: str, mode: str) -> None:
        self.dir = directory
        self.mode = mode
        self.started = time.time()
        self.socket_path = None
        self.contexts = ContextManager()
        self.procs = ProcStore(os.path.join(directory, "procs"))
        self.umask = current_umask()

    def shutdown(self) -> None:
        """Kill the interpreter contexts and leave; background processes keep running."""
        self.contexts.kill_all()
        if self.socket_path:
            try:
                os.unlink(self.socket_path)
            except OSError:
                pass
        log("shutting down")
        os._exit(0)


def current_umask() -> int:
    # os.umask() is the only portable getter and it briefly changes the process-wide value,
    # so read it once at start-up (still single-threaded) or from /proc.
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@op("hello")
def op_hello(agent: Agent, req: Request, p: Params) -> dict:
    return {
        "version": agent_version(),
        "protocol": PROTOCOL,
        "pid": os.getpid(),
        "uid": os.getuid(),
        "python": ".".join(str(part) for part in sys.version_info[:3]),
        "cwd": os.getcwd(),
        "agent_dir": agent.dir,
        "mode": agent.mode,
        "started": agent.started,
    }


@op("shutdown")
def op_shutdown(agent: Agent, req: Request, p: Params) -> dict:
    req.after = agent.shutdown
    return {}


# --------------------------------------------------------------------------------------------
# Output capture shared by exec and code_run


class Capture:
    """Keeps the first and the last limit/2 bytes of a stream and counts what falls between."""

    def __init__(self, limit: int) -> None:
        self._head_limit = (limit + 1) // 2
        self._tail_limit = limit - self._head_limit
        self._head = bytearray()
        self._tail = bytearray()
        self._total = 0
        self._lock = threading.Lock()

    def add(self, data: bytes) -> None:
        with self._lock:
            self._total += len(data)
            room = self._head_limit - len(self._head)
            if room > 0:
                self._head += data[:room]
                data = data[room:]
            if data and self._tail_limit:
                self._tail += data[-self._tail_limit :]
                excess = len(self._tail) - self._tail_limit
                if excess > 0:
                    del self._tail[:excess]

    def result(self):
        """(text, dropped byte count); a marker in the text shows where bytes were dropped."""
        with self._lock:
            dropped = self._total - len(self._head) - len(self._tail)
            if not dropped:
                return (bytes(self._head) + bytes(self._tail)).decode("utf-8", "replace"), 0
            head = bytes(self._head).decode("utf-8", "replace")
            tail = bytes(self._tail).decode("utf-8", "replace")
            return f"{head}\n[... {dropped} bytes omitted ...]\n{tail}", dropped


class Progress:
    """Batches output into `output` events, at most one flush per FLUSH_INTERVAL."""

    def __init__(self, req: Request, enabled: bool) -> None:
        self._req = req
        self._enabled = enabled
        self._lock = threading.Lock()
        self._pending = {name: bytearray() for name in STREAMS}
        self._skipped = {name: 0 for name in STREAMS}
        self._decoders = {name: codecs.getincrementaldecoder("utf-8")("replace") for name in STREAMS}
        self._last = time.monotonic()

    def add(self, stream: str, data: bytes) -> None:
        if not self._enabled:
            return
        with self._lock:
            pending = self._pending[stream]
            room = max(0, EVENT_CHUNK - len(pending))
            pending += data[:room]
            self._skipped[stream] += max(0, len(data) - room)

    def maybe_flush(self) -> None:
        now = time.monotonic()
        if not self._enabled or now - self._last < FLUSH_INTERVAL:
            return
        self._last = now
        with self._lock:
            batches = [(name, bytes(self._pending[name]), self._skipped[name]) for name in STREAMS]
            for name in STREAMS:
                self._pending[name] = bytearray()
                self._skipped[name] = 0
        for name, data, skipped in batches:
            text = self._decoders[name].decode(data)
            if text or skipped:
                fields = {"stream": name, "data": text}
                if skipped:
                    fields["skipped"] = skipped
                self._req.event("output", **fields)


class Sink:
    """Where a process's output goes: the result capture plus progress events."""

    def __init__(self, max_output: int, progress: Progress) -> None:
        self.captures = {name: Capture(max_output) for name in STREAMS}
        self.progress = progress

    def add(self, stream: str, data: bytes) -> None:
        self.captures[stream].add(data)
        self.progress.add(stream, data)

    def fields(self) -> dict:
        out: dict = {}
        for name in STREAMS:
            text, dropped = self.captures[name].result()
            out[name] = text
            out[name + "_dropped"] = dropped
        return out


def start_thread(target, *args, name: str = "worker") -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.name = name
    thread.start()
    return thread


def read_pipe(pipe, stream: str, sink: Sink) -> None:
    # Keeps draining after the request ends (a leftover background job may hold the pipe) so the
    # writer never blocks or dies of SIGPIPE; the capture is bounded.
    fd = pipe.fileno()
    try:
        while True:
            data = os.read(fd, 65536)
            if not data:
                break
            sink.add(stream, data)
    except OSError:
        pass
    finally:
        pipe.close()


def kill_group(pgid: int, sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(pgid, sig)
    except OSError:
        pass


# --------------------------------------------------------------------------------------------
# exec


def default_shell() -> str:
    return "/bin/bash" if os.access("/bin/bash", os.X_OK) else "/bin/sh"


def check_cwd(cwd) -> None:
    if cwd is None:
        return
    if not os.path.exists(cwd):
        raise Failure("not_found", f"working directory does not exist: {cwd}")
    if not os.path.isdir(cwd):
        raise Failure("not_a_directory", f"working directory is not a directory: {cwd}")


def merged_env(overrides) -> dict:
    env = dict(os.environ)
    if overrides:
        env.update(overrides)
    return env


def spawn(argv: list, **kwargs) -> subprocess.Popen:
    try:
        return subprocess.Popen(argv, **kwargs)
    except FileNotFoundError:
        raise Failure("not_found", f"executable not found: {argv[0]}") from None
    except PermissionError:
        raise Failure("permission", f"cannot execute {argv[0]}: permission denied") from None
    except OSError as exc:
        raise os_failure(exc, argv[0]) from None


@op("exec", "argv", "shell", "cwd", "env", "stdin_b64", "timeout", "max_output", "stream")
def op_exec(agent: Agent, req: Request, p: Params) -> dict:
    argv = p.str_list("argv", None)
    shell = p.string("shell", None, max_len=MAX_FRAME)
    if (argv is None) == (shell is None):
        raise bad_request("exactly one of 'argv' and 'shell' is required")
    if shell is not None and "\0" in shell:
        raise bad_request("'shell' contains a NUL character")
    cwd = p.path("cwd", None)
    env = p.environment("env")
    stdin = p.b64("stdin_b64", None)
    timeout = p.number("timeout", DEFAULT_TIMEOUT, lo=0, hi=MAX_TIMEOUT, lo_exclusive=True)
    max_output = p.integer("max_output", DEFAULT_OUTPUT, lo=0, hi=MAX_OUTPUT)
    stream = p.boolean("stream", True)
    check_cwd(cwd)
    command = argv if argv is not None else [default_shell(), "-c", shell]
    return run_process(req, command, cwd, merged_env(env), stdin, timeout, max_output, stream)


def run_process(req, command, cwd, env, stdin, timeout, max_output, stream) -> dict:
    started = time.monotonic()
    req.check_cancelled()
    proc = spawn(
        command,
        cwd=cwd,
        env=env,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group, so a timeout kills the whole tree
    )
    sink = Sink(max_output, Progress(req, stream))
    readers = [start_thread(read_pipe, proc.stdout, "stdout", sink, name="exec-stdout"),
               start_thread(read_pipe, proc.stderr, "stderr", sink, name="exec-stderr")]
    if stdin is not None:
        start_thread(feed_stdin, proc.stdin, stdin, name="exec-stdin")
    finished = threading.Event()
    start_thread(lambda: (proc.wait(), finished.set()), name="exec-wait")
    req.on_cancel(finished.set)

    deadline = started + timeout
    timed_out = False
    while not finished.is_set() or proc.returncode is None:
        now = time.monotonic()
        if now >= deadline:
            timed_out = True
            break
        if req.cancelled.is_set():
            break
        finished.wait(min(FLUSH_INTERVAL, deadline - now))
        sink.progress.maybe_flush()
    if proc.returncode is None:
        kill_group(proc.pid)
        proc.wait()
    grace_end = time.monotonic() + PIPE_GRACE
    for reader in readers:
        reader.join(max(0.0, grace_end - time.monotonic()))
    req.check_cancelled()
    result = sink.fields()
    result.update(
        exit_code=proc.returncode,
        timed_out=timed_out,
        duration=round(time.monotonic() - started, 4),
    )
    return result


def feed_stdin(pipe, data: bytes) -> None:
    try:
        pipe.write(data)
    except OSError:
        pass
    finally:
        try:
            pipe.close()
        except OSError:
            pass


# --------------------------------------------------------------------------------------------
# Files


def file_type(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISREG(mode):
        return "file"
    return "other"


@op("read_file", "path", "offset", "max_bytes")
def op_read_file(agent: Agent, req: Request, p: Params) -> dict:
    path = p.path("path")
    offset = p.integer("offset", 0, lo=0, hi=1 << 62)
    max_bytes = p.integer("max_bytes", DEFAULT_READ, lo=0, hi=MAX_READ)
    try:
        # O_NONBLOCK so a FIFO cannot hang the request before we get to reject it.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise os_failure(exc, path) from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise Failure("is_a_directory", f"{path} is a directory")
        if not stat.S_ISREG(st.st_mode):
            raise bad_request(f"{path} is not a regular file")
        data = pread_upto(fd, max_bytes + 1, offset)
    except OSError as exc:
        raise os_failure(exc, path) from None
    finally:
        os.close(fd)
    truncated = len(data) > max_bytes
    data = data[:max_bytes]
    return {
        "data_b64": base64.b64encode(data).decode("ascii"),
        "size": max(st.st_size, offset + len(data)),
        "truncated": truncated,
    }


def pread_upto(fd: int, count: int, offset: int) -> bytes:
    chunks = []
    while count > 0:
        chunk = os.pread(fd, min(count, 1 << 20), offset)
        if not chunk:
            break
        chunks.append(chunk)
        count -= len(chunk)
        offset += len(chunk)
    return b"".join(chunks)


@op("write_file", "path", "data_b64", "mkdirs", "append", "mode")
def op_write_file(agent: Agent, req: Request, p: Params) -> dict:
    path = p.path("path")
    data = p.b64("data_b64")
    mkdirs = p.boolean("mkdirs", True)
    append = p.boolean("append", False)
    mode = p.integer("mode", None, lo=0, hi=0o7777)
    target = os.path.realpath(path) if os.path.islink(path) else os.path.abspath(path)
    parent = os.path.dirname(target)
    try:
        if mkdirs:
            make_dirs(parent)
        if os.path.isdir(target):
            raise Failure("is_a_directory", f"{path} is a directory")
        if append:
            append_file(target, data, mode, agent.umask)
        else:
            replace_file(target, data, mode, agent.umask)
        return {"size": os.stat(target).st_size}
    except OSError as exc:
        raise os_failure(exc, path) from None


def make_dirs(path: str) -> None:
    try:
        os.makedirs(path, exist_ok=True)
    except FileExistsError:
        raise Failure("not_a_directory", f"a parent of the path is not a directory: {path}") from None
    except NotADirectoryError:
        raise Failure("not_a_directory", f"a parent of the path is not a directory: {path}") from None


def append_file(target: str, data: bytes, mode, umask: int) -> None:
    create_mode = mode if mode is not None else 0o666
    fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK, create_mode)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise bad_request(f"{target} is not a regular file")
        write_all(fd, data)
        if mode is not None:
            os.fchmod(fd, mode)
    finally:
        os.close(fd)


def replace_file(target: str, data: bytes, mode, umask: int) -> None:
    """Write to a temporary sibling and rename it over the target, so readers never see half."""
    if mode is None:
        try:
            mode = stat.S_IMODE(os.stat(target).st_mode)
        except OSError:
            mode = 0o666 & ~umask
    directory, base = os.path.split(target)
    temp = os.path.join(directory, f".{base[:100]}.corral-{secrets.token_hex(4)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            write_all(fd, data)
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
        os.replace(temp, target)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise


@op("list_files", "path", "depth", "max_entries")
def op_list_files(agent: Agent, req: Request, p: Params) -> dict:
    path = p.path("path")
    depth = p.integer("depth", 1, lo=1, hi=64)
    max_entries = p.integer("max_entries", 1000, lo=1, hi=100000)
    try:
        st = os.stat(path)
    except OSError as exc:
        raise os_failure(exc, path) from None
    if not stat.S_ISDIR(st.st_mode):
        raise Failure("not_a_directory", f"{path} is not a directory")
    try:
        os.listdir(path)
    except OSError as exc:
        raise os_failure(exc, path) from None
    entries: list = []
    truncated = walk_dir(req, path, "", depth, max_entries, entries)
    return {"entries": entries, "truncated": truncated}


def walk_dir(req, directory, prefix, depth, max_entries, entries) -> bool:
    """Depth-first, sorted listing into `entries`; True when max_entries cut it short."""
    req.check_cancelled()
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return False  # unreadable subdirectory: listed, but without children
    for name in names:
        if len(entries) >= max_entries:
            return True
        full = os.path.join(directory, name)
        rel = prefix + name
        try:
            st = os.lstat(full)
        except OSError:
            continue
        kind = file_type(st.st_mode)
        entries.append({"path": rel, "type": kind, "size": st.st_size, "mtime": st.st_mtime})
        if kind == "dir" and depth > 1:
            if walk_dir(req, full, rel + "/", depth - 1, max_entries, entries):
                return True
    return False


@op("stat", "path")
def op_stat(agent: Agent, req: Request, p: Params) -> dict:
    path = p.path("path")
    try:
        lst = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return {"exists": False, "type": None, "size": None, "mtime": None, "mode": None}
    except OSError as exc:
        raise os_failure(exc, path) from None
    result = {"exists": True, "type": file_type(lst.st_mode)}
    st = lst
    if stat.S_ISLNK(lst.st_mode):
        try:
            result["link_target"] = os.readlink(path)
            st = os.stat(path)
        except OSError:
            pass
    result.update(size=st.st_size, mtime=st.st_mtime, mode=stat.S_IMODE(st.st_mode))
    return result


@op("signal", "pid", "signal")
def op_signal(agent: Agent, req: Request, p: Params) -> dict:
    pid = p.integer("pid", lo=2, hi=(1 << 31) - 1)
    sig = p.signal_number("signal")
    if pid == os.getpid():
        raise bad_request("refusing to signal the agent itself")
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        raise Failure("not_found", f"no process {pid}") from None
    except PermissionError:
        raise Failure("permission", f"not allowed to signal process {pid}") from None
    return {}


# --------------------------------------------------------------------------------------------
# Background processes. Each lives in its own spool directory:
#   spec.json   command, cwd, env overrides, start time (written by the daemon)
#   pid.json    pid + start ticks of the command and of its waiter (written by the waiter)
#   output.log  combined stdout+stderr (O_APPEND, so offsets are stable)
#   stdin       FIFO; the waiter holds a write end open until proc_input {eof}
#   exit.json   exit code, written by the waiter once the command has been reaped
# Everything needed to answer proc_* lives on disk, so a restarted daemon picks them up.


def write_json_atomic(path: str, obj: dict) -> None:
    temp = f"{path}.{secrets.token_hex(4)}.tmp"
    with open(temp, "w") as f:
        json.dump(obj, f)
    os.replace(temp, path)


def read_json(path: str):
    try:
        with open(path) as f:
            value = json.load(f)
        return value if isinstance(value, dict) else None
    except (OSError, ValueError):
        return None


def start_ticks(pid: int):
    """The process's start time in clock ticks, to tell it apart from a later reuse of its pid."""
    fields = proc_stat_fields(pid)
    if fields is None or len(fields) < 20:
        return None
    try:
        return int(fields[19])
    except ValueError:
        return None


def proc_stat_fields(pid: int):
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except (OSError, ValueError):
        return None
    return text[text.rfind(")") + 2 :].split()


def pid_alive(pid, ticks) -> bool:
    if type(pid) is not int or pid <= 0:
        return False
    fields = proc_stat_fields(pid)
    if fields is None:
        if os.path.isdir("/proc/self"):
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True
    if fields[0] in ("Z", "X"):
        return False
    return ticks is None or start_ticks(pid) in (None, ticks)


class ProcStore:
    def __init__(self, directory: str) -> None:
        self.dir = directory
        self._reapers_lock = threading.Lock()

    def path(self, proc_id: str, *parts: str) -> str:
        return os.path.join(self.dir, proc_id, *parts)

    def existing(self, proc_id: str) -> str:
        if not NAME_RE.match(proc_id) or proc_id.startswith("."):
            raise bad_request(f"invalid proc_id {_short(proc_id)}")
        directory = self.path(proc_id)
        if not os.path.isfile(os.path.join(directory, "spec.json")):
            raise Failure("not_found", f"no background process {proc_id}")
        return directory

    def state(self, proc_id: str) -> dict:
        directory = self.path(proc_id)
        spec = read_json(os.path.join(directory, "spec.json")) or {}
        pids = read_json(os.path.join(directory, "pid.json")) or {}
        ended = read_json(os.path.join(directory, "exit.json"))
        pid = pids.get("pid")
        waiter = (pids.get("waiter_pid"), pids.get("waiter_ticks"))
        # Until exit.json exists a live waiter means "still running": between the command's exit
        # and the waiter recording it, the exit code is not known yet.
        running = ended is None and (pid_alive(pid, pids.get("ticks")) or pid_alive(*waiter))
        return {
            "proc_id": proc_id,
            "pid": pid,
            "command": spec.get("command"),
            "cwd": spec.get("cwd"),
            "running": running,
            "exit_code": ended.get("exit_code") if ended else None,
            "started": spec.get("started"),
            "ended": ended.get("ended") if ended else None,
            "_waiter": waiter,
        }

    def list(self) -> list:
        try:
            names = os.listdir(self.dir)
        except OSError:
            return []
        procs = []
        for name in names:
            if NAME_RE.match(name) and os.path.isfile(self.path(name, "spec.json")):
                state = self.state(name)
                state.pop("_waiter")
                procs.append(state)
        procs.sort(key=lambda item: (item.get("started") or 0, item["proc_id"]))
        return procs

    def start(self, command: str, cwd, env) -> dict:
        ensure_private_dir(self.dir)
        while True:
            proc_id = "p" + secrets.token_hex(5)
            try:
                os.mkdir(self.path(proc_id), 0o700)
                break
            except FileExistsError:
                continue
        directory = self.path(proc_id)
        spec = {"command": command, "cwd": cwd, "env": env or {}, "started": time.time()}
        write_json_atomic(os.path.join(directory, "spec.json"), spec)
        with open(os.path.join(directory, "waiter.log"), "ab") as waiter_log:
            waiter = spawn(
                [sys.executable, AGENT_FILE, "proc-waiter", directory],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=waiter_log,
                start_new_session=True,  # outlives the daemon and its process group
            )
        start_thread(waiter.wait, name="proc-reaper")
        line = read_line(waiter.stdout, 30.0)
        waiter.stdout.close()
        try:
            reply = json.loads(line.decode("utf-8")) if line else None
        except ValueError:
            reply = None
        if isinstance(reply, dict) and type(reply.get("pid")) is int:
            return {"proc_id": proc_id, "pid": reply["pid"]}
        detail = tail_of_file(os.path.join(directory, "waiter.log"), 2000)
        kill_group(waiter.pid)
        shutil.rmtree(directory, ignore_errors=True)
        if isinstance(reply, dict) and isinstance(reply.get("error"), dict):
            error = reply["error"]
            raise Failure(str(error.get("type", "internal")), str(error.get("message", "")))
        raise Failure("internal", "background process did not start: %s" % (detail or "no details"))


def read_line(pipe, timeout: float) -> bytes:
    fd = pipe.fileno()
    deadline = time.monotonic() + timeout
    data = b""
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while b"\n" not in data:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not sel.select(remaining):
                break
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            data += chunk
    return data.split(b"\n", 1)[0]


def tail_of_file(path: str, limit: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - limit))
            return f.read().decode("utf-8", "replace").strip()
    except OSError:
        return ""


def utf8_safe_end(data: bytes) -> int:
    """Length of `data` without a trailing incomplete UTF-8 sequence (so polls never split one)."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 != 0x80:  # a lead byte or ASCII
            need = 1 if byte < 0x80 else 2 if byte >> 5 == 0x6 else 3 if byte >> 4 == 0xE else 4
            return len(data) - back if need > back and byte >= 0xC0 else len(data)
    return len(data)


@op("proc_start", "command", "cwd", "env")
def op_proc_start(agent: Agent, req: Request, p: Params) -> dict:
    command = p.string("command", max_len=1 << 20)
    if "\0" in command:
        raise bad_request("'command' contains a NUL character")
    cwd = p.path("cwd", None)
    env = p.environment("env")
    check_cwd(cwd)
    return agent.procs.start(command, os.path.abspath(cwd) if cwd else os.getcwd(), env)


@op("proc_output", "proc_id", "since", "max_bytes", "wait")
def op_proc_output(agent: Agent, req: Request, p: Params) -> dict:
    proc_id = p.string("proc_id", max_len=64)
    since = p.integer("since", 0, lo=0, hi=1 << 62)
    max_bytes = p.integer("max_bytes", DEFAULT_OUTPUT, lo=1, hi=4 * 1024 * 1024)
    wait = p.number("wait", 0.0, lo=0, hi=MAX_PROC_WAIT)
    directory = agent.procs.existing(proc_id)
    log_path = os.path.join(directory, "output.log")
    deadline = time.monotonic() + wait
    while True:
        state = agent.procs.state(proc_id)
        size = file_size(log_path)
        if size > since or not state["running"] or time.monotonic() >= deadline:
            break
        if req.cancelled.wait(0.1):
            req.check_cancelled()
    data = b""
    if size > since:
        try:
            with open(log_path, "rb") as f:
                f.seek(since)
                data = f.read(max_bytes)
        except OSError as exc:
            raise os_failure(exc, log_path) from None
        more_may_follow = state["running"] or since + len(data) < size
        cut = utf8_safe_end(data)
        if more_may_follow and cut > 0:
            data = data[:cut]
    following = since + len(data)
    return {
        "data": data.decode("utf-8", "replace"),
        "next": following,
        "size": max(size, following),
        "eof": not state["running"] and following >= file_size(log_path),
        "running": state["running"],
        "exit_code": state["exit_code"],
    }


def file_size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


@op("proc_input", "proc_id", "data_b64", "eof")
def op_proc_input(agent: Agent, req: Request, p: Params) -> dict:
    proc_id = p.string("proc_id", max_len=64)
    data = p.b64("data_b64", None)
    eof = p.boolean("eof", False)
    if data is None and not eof:
        raise bad_request("one of 'data_b64' and 'eof' is required")
    directory = agent.procs.existing(proc_id)
    state = agent.procs.state(proc_id)
    if not state["running"]:
        raise Failure("not_running", f"background process {proc_id} is not running")
    written = 0
    if data:
        written = write_fifo(req, os.path.join(directory, "stdin"), data, proc_id)
    if eof:
        waiter_pid, waiter_ticks = state["_waiter"]
        if pid_alive(waiter_pid, waiter_ticks):
            os.kill(waiter_pid, signal.SIGUSR1)  # the waiter closes its end of the stdin FIFO
    return {"written": written}


def write_fifo(req: Request, path: str, data: bytes, proc_id: str) -> int:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno in (errno.ENXIO, errno.ENOENT):
            raise Failure("not_running", f"background process {proc_id} no longer reads its stdin") from None
        raise os_failure(exc, path) from None
    written = 0
    deadline = time.monotonic() + STDIN_WRITE_TIMEOUT
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_WRITE)
            while written < len(data):
                try:
                    written += os.write(fd, data[written : written + 65536])
                    continue
                except BlockingIOError:
                    pass
                except BrokenPipeError:
                    raise Failure("not_running", f"background process {proc_id} closed its stdin") from None
                remaining = deadline - time.monotonic()
                req.check_cancelled()
                if remaining <= 0:
                    message = "stdin of %s is not being read; wrote %d of %d bytes"
                    raise Failure("timeout", message % (proc_id, written, len(data)))
                sel.select(min(remaining, 0.5))
    finally:
        os.close(fd)
    return written


@op("proc_signal", "proc_id", "signal")
def op_proc_signal(agent: Agent, req: Request, p: Params) -> dict:
    proc_id = p.string("proc_id", max_len=64)
    sig = p.signal_number("signal", "TERM")
    agent.procs.existing(proc_id)
    state = agent.procs.state(proc_id)
    if not state["running"]:
        raise Failure("not_running", f"background process {proc_id} is not running")
    try:
        os.killpg(state["pid"], sig)  # the command leads its own session: signal all of it
    except ProcessLookupError:
        raise Failure("not_running", f"background process {proc_id} is not running") from None
    except PermissionError:
        raise Failure("permission", f"not allowed to signal background process {proc_id}") from None
    return {}


@op("proc_list")
def op_proc_list(agent: Agent, req: Request, p: Params) -> dict:
    return {"procs": agent.procs.list()}


def proc_waiter_main(directory: str) -> int:
    """Run one background command and record its exit code; detached from the daemon."""
    stdin_holder = [None]

    def close_stdin(signum, frame):
        fd, stdin_holder[0] = stdin_holder[0], None
        if fd is not None:
            os.close(fd)

    signal.signal(signal.SIGUSR1, close_stdin)
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    spec = read_json(os.path.join(directory, "spec.json")) or {}
    fifo = os.path.join(directory, "stdin")
    os.mkfifo(fifo, 0o600)
    # O_RDWR never blocks on a FIFO and keeps a writer present, so the command sees EOF only
    # once we drop it; the read end then opens without blocking.
    stdin_holder[0] = os.open(fifo, os.O_RDWR)
    stdin_fd = os.open(fifo, os.O_RDONLY)
    output_fd = os.open(os.path.join(directory, "output.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        child = subprocess.Popen(
            [default_shell(), "-c", str(spec.get("command", ""))],
            stdin=stdin_fd,
            stdout=output_fd,
            stderr=output_fd,
            cwd=spec.get("cwd") or None,
            env=merged_env(spec.get("env")),
            start_new_session=True,
            preexec_fn=reset_signals,  # SIG_IGN would survive exec; the waiter is single-threaded
        )
    except OSError as exc:
        failure = os_failure(exc)
        emit_line({"error": {"type": failure.kind, "message": failure.message}})
        return 1
    pids = {"pid": child.pid, "ticks": start_ticks(child.pid),
            "waiter_pid": os.getpid(), "waiter_ticks": start_ticks(os.getpid())}
    write_json_atomic(os.path.join(directory, "pid.json"), pids)
    emit_line({"pid": child.pid})
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 1)
    os.close(devnull)
    os.close(stdin_fd)
    os.close(output_fd)
    code = child.wait()
    write_json_atomic(os.path.join(directory, "exit.json"), {"exit_code": code, "ended": time.time()})
    return 0


def reset_signals() -> None:
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_DFL)


def emit_line(obj: dict) -> None:
    write_all(1, (json.dumps(obj) + "\n").encode("utf-8"))


# --------------------------------------------------------------------------------------------
# Code contexts: one interpreter driver process per (language, context)

_SPAWN_LOCK = threading.Lock()  # driver spawns briefly create inheritable fds


def driver_argv(language: str) -> list:
    directory = drivers_dir()
    if language == "javascript":
        node = shutil.which("node") or shutil.which("nodejs")
        if node is None:
            raise Failure("not_found", "javascript needs node, which is not installed in this sandbox")
        script, argv = "node_driver.js", [node]
    else:
        script = "python_driver.py" if language == "python" else "bash_driver.py"
        argv = [sys.executable]
    path = os.path.join(directory, script)
    if not os.path.isfile(path):
        raise Failure("not_found", f"{language} driver is missing: {path}")
    return [*argv, path]


def dup_high(fd: int) -> int:
    # Above 4, so the child's dup2 onto 3 and 4 cannot clobber the other source descriptor.
    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)


def reserve_low_fds() -> None:
    """Occupy fds 3 and 4 for good, so no pipe subprocess uses internally can land there."""
    while True:
        fd = os.open(os.devnull, os.O_RDONLY)
        if fd > 4:
            os.close(fd)
            return


class Driver:
    """A driver process with its control pipe (fd 3), reply pipe (fd 4) and output pipes."""

    def __init__(self, language: str, argv: list, cwd, env, context: Context) -> None:
        self.language = language
        self._context = context
        self.ready = threading.Event()
        self.exited = threading.Event()
        self.drained = threading.Event()
        self.deliberate = False  # killed on purpose (restart/close), not crashed
        self.stderr_head = bytearray()
        ctl_read, ctl_write = os.pipe()
        reply_read, reply_write = os.pipe()
        with _SPAWN_LOCK:
            try:
                child_ctl = dup_high(ctl_read)
                child_reply = dup_high(reply_write)
            finally:
                os.close(ctl_read)
                os.close(reply_write)

            def child_setup() -> None:
                os.dup2(child_ctl, 3)
                os.dup2(child_reply, 4)

            try:
                self.proc = spawn(
                    argv,
                    cwd=cwd,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    start_new_session=True,
                    # Everything the daemon opens is close-on-exec, so only 0-4 reach the driver.
                    close_fds=False,
                    preexec_fn=child_setup,
                )
            except BaseException:
                os.close(ctl_write)
                os.close(reply_read)
                raise
            finally:
                os.close(child_ctl)
                os.close(child_reply)
        self.pid = self.proc.pid
        self._ctl = ctl_write
        self._ctl_lock = threading.Lock()
        self._reply = reply_read
        os.set_blocking(ctl_write, False)

    def start_threads(self) -> None:
        start_thread(self._io_loop, name=f"driver-io-{self.pid}")
        start_thread(self._reap, name=f"driver-reap-{self.pid}")

    def alive(self) -> bool:
        return not self.exited.is_set()

    def wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.ready.is_set() and self.alive():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self.ready.wait(min(remaining, 0.05))
        return self.ready.is_set() and self.alive()

    def send(self, message: dict, deadline: float) -> bool:
        data = (json.dumps(message) + "\n").encode("utf-8", "backslashreplace")
        with self._ctl_lock:
            if self._ctl is None:
                return False
            view = memoryview(data)
            with selectors.DefaultSelector() as sel:
                sel.register(self._ctl, selectors.EVENT_WRITE)
                while view:
                    try:
                        view = view[os.write(self._ctl, view[:65536]) :]
                        continue
                    except BlockingIOError:
                        pass
                    except OSError:
                        return False
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or not self.alive():
                        return False
                    sel.select(min(remaining, 0.25))
        return True

    def interrupt(self) -> None:
        if self.alive():
            try:
                os.kill(self.pid, signal.SIGINT)
            except OSError:
                pass

    def kill(self) -> None:
        kill_group(self.pid)
        with self._ctl_lock:
            if self._ctl is not None:
                os.close(self._ctl)
                self._ctl = None

    def _reap(self) -> None:
        self.proc.wait()
        self.exited.set()
        with self._ctl_lock:
            if self._ctl is not None:
                os.close(self._ctl)
                self._ctl = None
        self._context.driver_event(self)

    def _io_loop(self) -> None:
        fds = {self.proc.stdout.fileno(): "stdout", self.proc.stderr.fileno(): "stderr", self._reply: "reply"}
        lines = bytearray()
        sel = selectors.DefaultSelector()
        try:
            for fd, name in fds.items():
                os.set_blocking(fd, False)
                sel.register(fd, selectors.EVENT_READ, name)
            while sel.get_map():
                for key, _ in sel.select():
                    if key.fd not in sel.get_map():
                        continue
                    if key.data == "reply":
                        self._read_replies(sel, key.fd, lines)
                    else:
                        self._read_output(sel, key.fd, key.data)
        except Exception:
            log(f"driver {self.pid} I/O loop failed:\n{traceback.format_exc()}")
            kill_group(self.pid)
        finally:
            sel.close()
            self.proc.stdout.close()
            self.proc.stderr.close()
            os.close(self._reply)
            self.drained.set()

    def _read_output(self, sel, fd: int, stream: str) -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        if not data:
            sel.unregister(fd)
            return
        if stream == "stderr" and len(self.stderr_head) < 8192:
            self.stderr_head += data[: 8192 - len(self.stderr_head)]
        self._context.driver_output(self, stream, data)

    def _drain_outputs(self, sel) -> None:
        # A reply is written after the driver flushed its output, so everything belonging to the
        # run is already in the pipes: take it before handing over the reply.
        for fd, key in list(sel.get_map().items()):
            while key.data != "reply" and fd in sel.get_map():
                try:
                    data = os.read(fd, 65536)
                except BlockingIOError:
                    break
                if not data:
                    sel.unregister(fd)
                    break
                self._context.driver_output(self, key.data, data)

    def _read_replies(self, sel, fd: int, lines: bytearray) -> None:
        try:
            data = os.read(fd, 1 << 20)
        except BlockingIOError:
            return
        if not data:
            sel.unregister(fd)
            return
        lines += data
        while True:
            end = lines.find(b"\n")
            if end < 0:
                break
            line = bytes(lines[:end])
            del lines[: end + 1]
            self._handle_line(sel, line)
        if len(lines) > MAX_DRIVER_LINE:
            log(f"driver {self.pid} sent an over-long line; killing it")
            sel.unregister(fd)
            kill_group(self.pid)

    def _handle_line(self, sel, line: bytes) -> None:
        try:
            message = json.loads(line.decode("utf-8", "replace"))
        except ValueError:
            log(f"driver {self.pid} sent a line that is not JSON: {line[:200]!r}")
            return
        if not isinstance(message, dict):
            return
        if message.get("ready") is True:
            self.ready.set()
            return
        self._drain_outputs(sel)
        self._context.driver_reply(self, message)


class Run:
    """One code_run in flight."""

    def __init__(self, run_id: int, sink: Sink) -> None:
        self.run_id = run_id
        self.sink = sink
        self.reply = None
        self.wake = threading.Event()
        self.interrupt_requested = False


class Context:
    def __init__(self, language: str, name: str) -> None:
        self.language = language
        self.name = name
        self.created = time.time()
        self.runs = 0
        self.run_lock = threading.Lock()
        self.driver = None
        self._lock = threading.Lock()  # guards driver/run hand-over against the I/O threads
        self._run = None
        self._idle = {stream: Capture(IDLE_OUTPUT) for stream in STREAMS}

    @property
    def label(self) -> str:
        return f"{self.language} context {self.name!r}"

    def busy(self) -> bool:
        return self._run is not None

    def info(self) -> dict:
        driver = self.driver
        alive = driver is not None and driver.alive()
        return {"language": self.language, "context": self.name, "pid": driver.pid if alive else None,
                "created": self.created, "runs": self.runs, "busy": self.busy(), "alive": alive}

    # Called from the driver's threads.
    def driver_output(self, driver: Driver, stream: str, data: bytes) -> None:
        with self._lock:
            if driver is not self.driver:
                return
            if self._run is not None:
                self._run.sink.add(stream, data)
            else:
                self._idle[stream].add(data)

    def driver_reply(self, driver: Driver, message: dict) -> None:
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
        if self.language != "javascript":
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

    def run(self, req: Request, code: str, timeout: float, max_output: int, stream: bool) -> dict:
        started = time.monotonic()
        deadline = started + timeout
        if not self.run_lock.acquire(timeout=timeout):
            raise Failure("busy", f"{self.label} was busy with another run for the whole timeout")
        try:
            return self._run_locked(req, code, started, deadline, max_output, stream)
        finally:
            self.run_lock.release()

    def _run_locked(self, req, code, started, deadline, max_output, stream) -> dict:
        req.check_cancelled()
        outcome = {"timed_out": False, "interrupted": False, "restarted": False, "state_lost": False}
        driver = self.driver
        if driver is not None and not driver.alive():
            if not driver.deliberate:  # it died since the last run; say so once
                outcome["restarted"] = outcome["state_lost"] = True
            with self._lock:
                self.driver = None
        if self.driver is None:
            self.start_driver()
        driver = self.driver
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
            error = self._drive(req, driver, run, code, deadline, outcome)
        finally:
            with self._lock:
                self._run = None
        req.check_cancelled()
        reply = run.reply or {}
        result = run.sink.fields()
        result.update(outcome)
        result.update(
            value=clean_value(reply.get("value")),
            images=clean_images(reply.get("images")),
            error=error or clean_error(reply.get("error")),
            duration=round(time.monotonic() - started, 4),
        )
        return result

    def _drive(self, req, driver, run, code, deadline, outcome):
        """Send the code, wait for the reply; interrupt, kill and restart as needed.

        Returns a synthesized error for runs that ended without a reply, else None.
        """
        if not driver.send({"id": run.run_id, "code": code}, deadline):
            if driver.alive():
                outcome["timed_out"] = True
                return self._replace_driver(driver, outcome, "did not accept the code in time")
        interrupted_at = None
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

    def _driver_gone(self, driver, outcome) -> dict:
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

    def _replace_driver(self, driver, outcome, why: str) -> dict:
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


def clean_value(value):
    if value is None:
        return None
    text = value if isinstance(value, str) else repr(value)
    if len(text) > MAX_VALUE:
        text = text[:MAX_VALUE] + "... [%s characters omitted]" % (len(text) - MAX_VALUE)
    return text


def clean_images(images) -> list:
    if not isinstance(images, list):
        return []
    kept: list = []
    total = 0
    for image in images:
        if isinstance(image, str) and total + len(image) <= MAX_IMAGES:
            kept.append(image)
            total += len(image)
    return kept


def clean_error(error):
    if not isinstance(error, dict):
        return None
    return {key: str(error.get(key) or "")[:MAX_VALUE] for key in ("ename", "evalue", "traceback")}


class ContextManager:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._contexts: dict = {}

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

    def all(self) -> list:
        with self._lock:
            return sorted(self._contexts.values(), key=lambda c: (c.language, c.name))

    def kill_all(self) -> None:
        for context in self.all():
            context.stop_driver()


@op("code_run", "language", "context", "code", "timeout", "max_output", "stream")
def op_code_run(agent: Agent, req: Request, p: Params) -> dict:
    language = p.choice("language", LANGUAGES)
    name = p.name("context")
    code = p.string("code", max_len=4 * 1024 * 1024, allow_empty=True)
    timeout = p.number("timeout", DEFAULT_TIMEOUT, lo=0, hi=MAX_TIMEOUT, lo_exclusive=True)
    max_output = p.integer("max_output", DEFAULT_OUTPUT, lo=0, hi=MAX_OUTPUT)
    stream = p.boolean("stream", True)
    context = agent.contexts.get(language, name, create=True)
    try:
        return context.run(req, code, timeout, max_output, stream)
    except Failure:
        if context.runs == 0:
            agent.contexts.remove(context)  # never came up: don't list a dead context
        raise


@op("context_list")
def op_context_list(agent: Agent, req: Request, p: Params) -> dict:
    return {"contexts": [context.info() for context in agent.contexts.all()]}


@op("context_interrupt", "language", "context")
def op_context_interrupt(agent: Agent, req: Request, p: Params) -> dict:
    context = agent.contexts.get(p.choice("language", LANGUAGES), p.name("context"), create=False)
    return {"interrupted": context.interrupt()}


@op("context_restart", "language", "context")
def op_context_restart(agent: Agent, req: Request, p: Params) -> dict:
    context = agent.contexts.get(p.choice("language", LANGUAGES), p.name("context"), create=False)
    context.stop_driver()  # a run in progress ends with ContextRestarted and frees the lock
    if not context.run_lock.acquire(timeout=10.0):
        raise Failure("busy", f"{context.label} did not become idle after being killed")
    try:
        driver = context.start_driver()
        return {"pid": driver.pid}
    finally:
        context.run_lock.release()


@op("context_close", "language", "context")
def op_context_close(agent: Agent, req: Request, p: Params) -> dict:
    context = agent.contexts.get(p.choice("language", LANGUAGES), p.name("context"), create=False)
    agent.contexts.remove(context)
    context.stop_driver()
    return {}


# --------------------------------------------------------------------------------------------
# Entry points


def daemon_main() -> int:
    directory = ensure_private_dir(agent_dir())
    reserve_low_fds()
    lock_fd = acquire_daemon_lock(directory, DAEMON_LOCK_WAIT)
    if lock_fd is None:
        log(f"another daemon holds {directory}/daemon.lock; exiting")
        return 1
    agent = Agent(directory, "daemon")
    path = os.path.join(directory, "agent.sock")
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    previous = os.umask(0o077)
    try:
        server.bind(path)
    finally:
        os.umask(previous)
    server.listen(64)
    agent.socket_path = path
    with open(os.path.join(directory, "agent.pid"), "w") as f:
        f.write(f"{os.getpid()}\n")
    signal.signal(signal.SIGTERM, lambda signum, frame: agent.shutdown())
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    log(f"daemon {agent_version()} listening on {path}")
    serial = 0
    while True:
        try:
            conn, _ = server.accept()
        except OSError as exc:
            log(f"accept failed: {exc}")
            time.sleep(0.1)
            continue
        serial += 1
        connection = Connection(agent, SocketStream(conn), f"connection {serial}")
        start_thread(connection.serve, name=f"connection-{serial}")


def acquire_daemon_lock(directory: str, wait: float):
    fd = os.open(os.path.join(directory, "daemon.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except OSError:
            if time.monotonic() >= deadline:
                os.close(fd)
                return None
            time.sleep(0.05)


def serve_stdio_main() -> int:
    # Keep the protocol on private descriptors; stray prints land on stderr, and children that
    # inherit fd 0 read /dev/null instead of stealing request bytes.
    rfd, wfd = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    os.close(devnull)
    reserve_low_fds()
    directory = ensure_private_dir(agent_dir())
    agent = Agent(directory, "serve-stdio")
    signal.signal(signal.SIGTERM, lambda signum, frame: agent.shutdown())
    Connection(agent, FdStream(rfd, wfd), "stdio").serve()
    agent.contexts.kill_all()
    return 0


def relay_main() -> int:
    directory = ensure_private_dir(agent_dir())
    path = os.path.join(directory, "agent.sock")
    sock = connect_current_daemon(directory, path)
    if sock is None:
        return 1
    pump(sock, half_close=False)
    return 0


def connect_current_daemon(directory: str, path: str):
    hello = probe_daemon(path)
    if hello is not None and hello.get("version") != agent_version():
        old_version = hello.get("version")
        log(f"replacing daemon version {old_version} with {agent_version()}")
        request_shutdown(path)
        if not wait_lock_free(directory, DAEMON_LOCK_WAIT):
            log("the old daemon did not exit")
            return None
        hello = None
    if hello is None:
        spawn_daemon(directory)
    deadline = time.monotonic() + DAEMON_START_TIMEOUT
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
            return sock
        except OSError:
            sock.close()
        if time.monotonic() >= deadline:
            details = tail_of_file(os.path.join(directory, "agent.log"), 2000)
            log(f"daemon did not come up; its log says: {details}")
            return None
        time.sleep(0.05)


def probe_daemon(path: str, timeout: float = 5.0):
    """The daemon's hello reply, or None if nothing answers on the socket."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
        sock.sendall(encode_frame({"id": 0, "op": "hello"}))
        reply = FrameReader(sock.recv).read()
    except (OSError, ProtocolError):
        return None
    finally:
        sock.close()
    if isinstance(reply, dict) and reply.get("event") == "result":
        return reply
    return None


def request_shutdown(path: str) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5.0)
    try:
        sock.connect(path)
        sock.sendall(encode_frame({"id": 0, "op": "shutdown"}))
        FrameReader(sock.recv).read()
    except (OSError, ProtocolError):
        pass
    finally:
        sock.close()


def wait_lock_free(directory: str, wait: float) -> bool:
    fd = acquire_daemon_lock(directory, wait)
    if fd is None:
        return False
    os.close(fd)
    return True


def spawn_daemon(directory: str) -> None:
    """Start `agent.py daemon` fully detached (double fork + setsid) with stdio off the relay."""
    log_path = os.path.join(directory, "agent.log")
    try:
        if os.path.getsize(log_path) > LOG_ROTATE_BYTES:
            os.replace(log_path, log_path + ".1")
    except OSError:
        pass
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            if os.fork() != 0:
                os._exit(0)
            devnull = os.open(os.devnull, os.O_RDWR)
            log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            os.dup2(devnull, 0)
            os.dup2(devnull, 1)
            os.dup2(log_fd, 2)
            os.closerange(3, 1024)
            os.execv(sys.executable, [sys.executable, AGENT_FILE, "daemon"])
        except BaseException:
            pass
        os._exit(127)
    os.waitpid(pid, 0)


def pump(sock: socket.socket, half_close: bool) -> None:
    """Copy stdin -> sock and sock -> stdout until one side ends.

    With half_close (TCP forwarding) the end of stdin is passed on as a write shutdown and we
    keep reading the answer; otherwise it ends the relay.
    """
    sock.settimeout(None)
    sel = selectors.PollSelector()
    sel.register(0, selectors.EVENT_READ, "stdin")
    sel.register(sock, selectors.EVENT_READ, "sock")
    try:
        while True:
            for key, _ in sel.select():
                if key.data == "stdin":
                    data = os.read(0, 65536)
                    if data:
                        sock.sendall(data)
                    elif half_close:
                        sock.shutdown(socket.SHUT_WR)
                        sel.unregister(0)
                    else:
                        return
                else:
                    data = sock.recv(65536)
                    if not data:
                        return
                    write_all(1, data)
    except OSError:
        return
    finally:
        sel.close()
        sock.close()


def tcp_relay_main(host: str, port_text: str) -> int:
    try:
        port = int(port_text)
        if not 0 < port < 65536:
            raise ValueError(port_text)
    except ValueError:
        log(f"invalid port {port_text!r}")
        return 2
    try:
        sock = socket.create_connection((host, port), timeout=10.0)
    except OSError as exc:
        log(f"cannot connect to {host}:{port}: {exc}")
        return 1
    pump(sock, half_close=True)
    return 0


USAGE = "usage: agent.py [relay | daemon | serve-stdio | tcp-relay HOST PORT | version]"


def main(argv: list) -> int:
    mode = argv[0] if argv else "relay"
    if mode == "relay" and len(argv) <= 1:
        return relay_main()
    if mode == "daemon" and len(argv) == 1:
        return daemon_main()
    if mode == "serve-stdio" and len(argv) == 1:
        return serve_stdio_main()
    if mode == "tcp-relay" and len(argv) == 3:
        return tcp_relay_main(argv[1], argv[2])
    if mode == "proc-waiter" and len(argv) == 2:
        return proc_waiter_main(argv[1])
    if mode == "version" and len(argv) == 1:
        print(agent_version())
        return 0
    log(USAGE)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
