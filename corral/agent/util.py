"""Small helpers every part of the agent uses: logging, directories, threads, files."""

from __future__ import annotations

import fcntl
import json
import os
import selectors
import stat
import sys
import threading
import time

from .bundle import DEFAULT_AGENT_DIR, DEFAULT_DATA_DIR
from .errors import Failure, bad_request, os_failure

TYPE_CHECKING = False  # typing is not imported at run time: it costs the daemon ~1 MiB in every sandbox
if TYPE_CHECKING:
    from typing import IO, Any, Callable


def token(nbytes: int) -> str:
    """Random hex, like secrets.token_hex: secrets imports hashlib (OpenSSL), which costs every
    agent process ~6 MB and ~80 ms under gVisor."""
    return os.urandom(nbytes).hex()


def log(message: str) -> None:
    try:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        sys.stderr.write(f"{stamp} corral-agent[{os.getpid()}]: {message}\n")
        sys.stderr.flush()
    except Exception:
        pass


def agent_dir() -> str:
    """The agent's state directory (socket, lock, log, process spools)."""
    return os.environ.get("CORRAL_AGENT_DIR") or DEFAULT_AGENT_DIR


def data_dir() -> str:
    """Where state that must outlive a restart of the sandbox goes (background process spools):
    on the sandbox's disk, not in /tmp, which is memory and goes with every restart or OOM.
    With $CORRAL_AGENT_DIR (tests) everything stays in that one directory."""
    if os.environ.get("CORRAL_AGENT_DIR"):
        return agent_dir()
    parent = os.path.dirname(DEFAULT_DATA_DIR)
    if os.path.isdir(parent) and os.access(parent, os.W_OK):
        return DEFAULT_DATA_DIR
    return agent_dir()


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


def start_thread(target: Callable[..., object], *args: object, name: str = "worker") -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.name = name
    thread.start()
    return thread


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def read_line(pipe: IO[bytes], timeout: float) -> bytes:
    """The first line `pipe` yields within `timeout` (without its newline), or what came."""
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


def write_json_atomic(path: str, obj: dict[str, Any]) -> None:
    temp = f"{path}.{token(4)}.tmp"
    with open(temp, "w") as f:
        json.dump(obj, f)
    os.replace(temp, path)


def read_json(path: str) -> dict[str, Any] | None:
    try:
        with open(path) as f:
            value = json.load(f)
        return value if isinstance(value, dict) else None
    except (OSError, ValueError):
        return None


def file_type(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISREG(mode):
        return "file"
    return "other"


def acquire_lock(path: str, wait: float) -> int | None:
    """An fd holding an exclusive flock on `path`, or None if it stays taken for `wait` s."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
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


def open_regular_file(path: str) -> tuple[int, os.stat_result]:
    """A descriptor of the regular file at `path` and its stat; Failure for anything else. O_NONBLOCK
    so that a FIFO cannot hang the request before it is refused."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise os_failure(exc, path) from None
    try:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode):
            return fd, st
        problem = (
            Failure("is_a_directory", f"{path} is a directory")
            if stat.S_ISDIR(st.st_mode)
            else bad_request(f"{path} is not a regular file")
        )
    except OSError as exc:
        problem = os_failure(exc, path)
    os.close(fd)
    raise problem


def pread_upto(fd: int, count: int, offset: int) -> bytes:
    """Up to `count` bytes from `offset` (fewer at the end of the file)."""
    chunks = []
    while count > 0:
        chunk = os.pread(fd, min(count, 1 << 20), offset)
        if not chunk:
            break
        chunks.append(chunk)
        count -= len(chunk)
        offset += len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
