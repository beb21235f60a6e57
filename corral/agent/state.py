"""What every connection of one agent process shares: contexts, background processes, paths."""

from __future__ import annotations

import os
import threading
import time

from .contexts import ContextManager
from .procs import ProcStore
from .util import current_umask, data_dir, log

TYPE_CHECKING = False  # typing is not imported at run time: it costs the daemon ~1 MiB in every sandbox
if TYPE_CHECKING:
    from .rpc import Connection


class Agent:
    def __init__(self, directory: str, mode: str) -> None:
        self.dir = directory
        self.mode = mode
        self.started = time.time()
        self.socket_path: str | None = None
        self.contexts = ContextManager()
        self.procs = ProcStore(os.path.join(data_dir(), "procs"), older=(os.path.join(directory, "procs"),))
        self.umask = current_umask()
        self._connections: set[Connection] = set()
        self._connections_lock = threading.Lock()

    def serve(self, connection: Connection) -> None:
        """Serve one connection until it ends (in the calling thread), known to close_connections."""
        with self._connections_lock:
            self._connections.add(connection)
        try:
            connection.serve()
        finally:
            with self._connections_lock:
                self._connections.discard(connection)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            connection.close()

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
