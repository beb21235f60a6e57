"""The relay (what the host's `docker exec` runs) and tcp-relay modes.

The relay makes sure a daemon of this version listens on `<agent dir>/agent.sock` (replacing one
of another version, starting one fully detached if none answers) and then hands its stdin/stdout
to the daemon over `<agent dir>/stdio.sock` (SCM_RIGHTS), so the daemon reads and writes the host's
stream itself and no byte is copied twice; the relay only waits until the daemon is done with them.
If that fails it copies bytes between its stdin/stdout and agent.sock instead. tcp-relay copies
between stdin/stdout and a TCP port inside the sandbox.
"""

from __future__ import annotations

import array
import os
import selectors
import socket
import sys
import time

from .bundle import agent_version, launch_argv
from .util import acquire_lock, agent_dir, ensure_private_dir, log, tail_of_file, write_all
from .wire import FrameReader, ProtocolError, encode_frame

TYPE_CHECKING = False  # typing is not imported at run time: it costs the daemon ~1 MiB in every sandbox
if TYPE_CHECKING:
    from typing import Any

DAEMON_LOCK_WAIT = 10.0
DAEMON_START_TIMEOUT = 20.0
LOG_ROTATE_BYTES = 1024 * 1024
CATS = ("/bin/cat", "/usr/bin/cat")
# glibc's malloc settings for the daemon (never for what it runs). Under gVisor the first touch of
# every page is a trap to the sentry, and a daemon that hands a 1 MiB frame's memory back after
# each request and faults it in again for the next paid ~3 ms per MiB moved (measured). So: one
# arena (requests run on several worker threads), blocks up to 4 MiB from the heap, and up to
# 8 MiB of it kept for the next request.
DAEMON_MALLOC = {"MALLOC_ARENA_MAX": "1", "MALLOC_MMAP_THRESHOLD_": "4194304", "MALLOC_TRIM_THRESHOLD_": "8388608"}
DAEMON_ADDED = "CORRAL_DAEMON_ADDED"  # which of them the daemon removes again (the sandbox's own stay)


def relay_main() -> int:
    directory = ensure_private_dir(agent_dir())
    path = os.path.join(directory, "agent.sock")
    sock = connect_current_daemon(directory, path)
    if sock is None:
        return 1
    if hand_over_stdio(os.path.join(directory, "stdio.sock")):
        sock.close()
        return 0
    pump(sock, half_close=False)
    return 0


def hand_over_stdio(path: str) -> bool:
    """Pass our stdin and stdout to the daemon and wait until it has finished with them (it closes
    the socket). False if the daemon did not take them: the caller relays instead."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.settimeout(10.0)
        conn.connect(path)
        fds = array.array("i", [0, 1]).tobytes()
        conn.sendmsg([b"\0"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
        if conn.recv(1) != b"\1":
            return False
    except OSError:
        conn.close()
        return False
    conn.settimeout(None)
    wait_as_cat(conn)
    try:
        while conn.recv(4096):
            pass
    except OSError:
        pass
    conn.close()
    return True


def wait_as_cat(conn: socket.socket) -> None:
    """Become `cat` reading the hand-over socket: the relay only has to live until the daemon closes
    it, and a waiting Python costs every sandbox several MiB that a waiting cat does not. Returns
    only if there is no root-owned cat to become (the caller waits itself)."""
    for cat in CATS:
        real = os.path.realpath(cat)
        try:
            owners = [os.stat(real), os.stat(os.path.dirname(real))]
        except OSError:
            continue
        if any(st.st_uid != 0 or st.st_mode & 0o022 for st in owners):
            continue  # a program the sandbox user could have changed is never run
        try:
            devnull = os.open(os.devnull, os.O_RDWR)
            # Our copies of the exec's stdio go: the daemon holds its own, and a checkpoint must
            # find no process but the daemon's handled ones holding host descriptors.
            os.dup2(conn.fileno(), 0)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            os.execv(real, [real])
        except OSError:
            return


def connect_current_daemon(directory: str, path: str) -> socket.socket | None:
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


def probe_daemon(path: str, timeout: float = 5.0) -> dict[str, Any] | None:
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
    fd = acquire_lock(os.path.join(directory, "daemon.lock"), wait)
    if fd is None:
        return False
    os.close(fd)
    return True


def spawn_daemon(directory: str) -> None:
    """Start the daemon fully detached (double fork + setsid) with stdio off the relay."""
    log_path = os.path.join(directory, "agent.log")
    try:
        if os.path.getsize(log_path) > LOG_ROTATE_BYTES:
            os.replace(log_path, log_path + ".1")
    except OSError:
        pass
    argv = launch_argv("daemon")
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
            added = [key for key in DAEMON_MALLOC if key not in os.environ]
            env = dict(os.environ, **{key: DAEMON_MALLOC[key] for key in added})
            env[DAEMON_ADDED] = ",".join(added)
            os.execve(sys.executable, argv, env)
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
