"""Background tasks that must never take the server down with them.

A task that raises is logged with its traceback and started again after a back-off; only
cancellation (server shutdown) ends it. A silent zombie server (a dead task group answering
every call with an error) is worse than a task that retries.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import anyio
from anyio.abc import TaskGroup

log = logging.getLogger(__name__)

MAX_BACKOFF = 30.0


def supervise(tg: TaskGroup, name: str, fn: Callable[[], Awaitable[None]], *, restart: bool = True) -> None:
    async def run() -> None:
        backoff = 0.5
        while True:
            try:
                await fn()
                if not restart:
                    return
                backoff = 0.5
            except anyio.get_cancelled_exc_class():
                raise
            except Exception:
                log.exception("background task %r failed; restarting it in %.1f s", name, backoff)
            await anyio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    tg.start_soon(run, name=name)
