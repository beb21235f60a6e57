"""Threads that run requests, kept between requests.

Starting a thread costs 1-2 ms under gVisor (clone, stack mapping), more than a small request
itself; idle workers wait for the next task and leave after IDLE_SECONDS without one.
"""

from __future__ import annotations

import queue
import threading

from .util import log

TYPE_CHECKING = False  # typing is not imported at run time: it costs the daemon ~1 MiB in every sandbox
if TYPE_CHECKING:
    from typing import Any, Callable

    Task = Callable[[], Any]

IDLE_SECONDS = 30.0


_tasks: queue.SimpleQueue[Task] = queue.SimpleQueue()
_lock = threading.Lock()
_idle = 0  # workers waiting for a task, minus tasks queued for them and not yet taken


def run_soon(task: Task, name: str = "worker") -> None:
    """Run `task` on an idle worker, or on a new one. Raises RuntimeError if no thread can start."""
    global _idle
    with _lock:
        if _idle > 0:
            _idle -= 1
            _tasks.put(task)
            return
    thread = threading.Thread(target=_work, args=(task,), daemon=True)
    thread.name = name
    thread.start()


def _work(task: Task) -> None:
    global _idle
    while True:
        try:
            task()
        except Exception:
            import traceback

            log("worker task failed:\n" + traceback.format_exc())
        task = None  # type: ignore[assignment]  # let what it held go while we wait
        with _lock:
            _idle += 1
        try:
            task = _tasks.get(timeout=IDLE_SECONDS)
        except queue.Empty:
            with _lock:
                try:
                    task = _tasks.get_nowait()  # queued for us as we timed out
                except queue.Empty:
                    _idle -= 1
                    return
