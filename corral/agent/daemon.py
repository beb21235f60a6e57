"""The daemon (unix socket, one thread per connection) and serve-stdio (one connection on stdio)."""

from __future__ import annotations

import os
import signal
import socket
import time

# Importing the ops_* modules registers their ops.
from . import ops_agent, ops_code, ops_exec, ops_files, ops_fs, ops_lifecycle, ops_procs, ops_signal  # noqa: F401
from .bundle import agent_version
from .driver import reserve_low_fds
from .relay import DAEMON_LOCK_WAIT
from .rpc import Connection
from .state import Agent
from .util import acquire_lock, agent_dir, ensure_private_dir, log, start_thread
from .wire import FdStream, SocketStream


def daemon_main() -> int:
    directory = ensure_private_dir(agent_dir())
    reserve_low_fds()
    lock_fd = acquire_lock(os.path.join(directory, "daemon.lock"), DAEMON_LOCK_WAIT)
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
        start_thread(agent.serve, connection, name=f"connection-{serial}")


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
