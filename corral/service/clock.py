"""Time as a dependency: lifetimes are deadlines, and tests move time instead of sleeping.

`SystemClock` is the wall clock (epoch seconds, as stored in SQLite). `ManualClock` only moves
when told (`advance`), and wakes whatever waits for a deadline it passes.
"""

from __future__ import annotations

import time
from typing import Protocol

import anyio


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""
        ...

    async def wait(self, deadline: float, wakeup: anyio.Event) -> None:
        """Return once `deadline` has passed or `wakeup` is set, whichever comes first."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    async def wait(self, deadline: float, wakeup: anyio.Event) -> None:
        with anyio.move_on_after(max(0.0, deadline - time.time())):
            await wakeup.wait()


class ManualClock:
    """A clock for tests: `advance(seconds)` moves it and wakes the waiters whose deadline passed."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = start
        self._moved = anyio.Event()

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds
        self._moved.set()
        self._moved = anyio.Event()

    async def wait(self, deadline: float, wakeup: anyio.Event) -> None:
        while self._now < deadline and not wakeup.is_set():
            moved = self._moved
            async with anyio.create_task_group() as tg:

                async def on_wakeup() -> None:
                    await wakeup.wait()
                    tg.cancel_scope.cancel()

                tg.start_soon(on_wakeup)
                await moved.wait()
                tg.cancel_scope.cancel()
