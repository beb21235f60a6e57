"""What every connection of one agent process shares: contexts, background processes, paths."""

from __future__ import annotations

import os
import time

from .contexts import ContextManager
from .procs import ProcStore
from .util import current_umask, data_dir, log


class Agent:
    def __init__(self, directory: str, mode: str) -> None:
        self.dir = directory
        self.mode = mode
        self.started = time.time()
        self.socket_path: str | None = None
        self.contexts = ContextManager()
        self.procs = ProcStore(os.path.join(data_dir(), "procs"), older=(os.path.join(directory, "procs"),))
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
