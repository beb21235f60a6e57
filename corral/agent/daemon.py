"""The daemon (unix socket, one thread per connection) and serve-stdio (one connection on stdio)."""

from __future__ import annotations

import array
import os
import signal
import socket
import time

# Importing the ops_* modules registers their ops.
from . import (  # noqa: F401
    ops_agent,
    ops_code,
    ops_exec,
    ops_files,
    ops_fs,
    ops_lifecycle,
    ops_lines,
    ops_procs,
    ops_signal,
)
from .bundle import agent_version
from .driver import reserve_low_fds
from .relay import DAEMON_ADDED, DAEMON_LOCK_WAIT, DAEMON_MALLOC
from .rpc import Connection
from .state import Agent
from .util import acquire_lock, agent_dir, ensure_private_dir, log, start_thread
from .wire import FdStream, SocketStream


def forget_malloc_settings() -> None:
    """The malloc settings the daemon was started with are its own: processes it starts get the
    sandbox's environment as it was (they are read once, when the process starts)."""
    for key in os.environ.pop(DAEMON_ADDED, "").split(","):
        if key in DAEMON_MALLOC:
            os.environ.pop(key, None)


def daemon_main() -> int:
    forget_malloc_settings()
    directory = ensure_private_dir(agent_dir())
    reserve_low_fds()
    lock_fd = acquire_lock(os.path.join(directory, "daemon.lock"), DAEMON_LOCK_WAIT)
    if lock_fd is None:
        log(f"another daemon holds {directory}/daemon.lock; exiting")
        return 1
    agent = Agent(directory, "daemon")
    # stdio.sock first: a relay that finds agent.sock answering goes on to hand over its stdio.
    start_thread(serve_handoffs, agent, listen_private(os.path.join(directory, "stdio.sock")), name="handoffs")
    path = os.path.join(directory, "agent.sock")
    server = listen_private(path)
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
        start_thread(agent.serve, connection, name=f"connection-{serial}")


def listen_private(path: str) -> socket.socket:
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
    return server


def serve_handoffs(agent: Agent, server: socket.socket) -> None:
    """Accept relays handing over their stdin/stdout (see relay.hand_over_stdio)."""
    serial = 0
    while True:
        try:
            conn, _ = server.accept()
        except OSError as exc:
            log(f"accept (stdio.sock) failed: {exc}")
            time.sleep(0.1)
            continue
        serial += 1
        start_thread(adopt_stdio, agent, conn, f"relay {serial}", name=f"relay-{serial}")


def adopt_stdio(agent: Agent, conn: socket.socket, label: str) -> None:
    """Serve the host on a relay's stdin/stdout (passed with SCM_RIGHTS); close `conn` when done,
    which lets the relay, and so the host's `docker exec`, end."""
    fds: list[int] = []
    try:
        conn.settimeout(10.0)
        # MSG_CMSG_CLOEXEC: programs the agent starts must never inherit the host's stream.
        _, ancillary, _, _ = conn.recvmsg(1, socket.CMSG_SPACE(8), socket.MSG_CMSG_CLOEXEC)
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                received = array.array("i")
                received.frombytes(data[: len(data) - len(data) % received.itemsize])
                fds.extend(received)
        if len(fds) != 2:
            raise OSError(f"expected 2 descriptors, got {len(fds)}")
        for fd in fds:
            os.set_inheritable(fd, False)
        conn.sendall(b"\1")
        conn.settimeout(None)
    except OSError as exc:
        log(f"{label}: handover failed: {exc}")
        for fd in fds:
            os.close(fd)
        conn.close()
        return
    try:
        agent.serve(Connection(agent, FdStream(fds[0], fds[1]), label))
    finally:
        conn.close()


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
