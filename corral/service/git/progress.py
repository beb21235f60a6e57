"""One rising 0..100 progress scale over git's phases and Corral's own steps."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

from corral.service.git.constants import Listener, OnProgress
from corral.service.git.secrets import redact

log = logging.getLogger(__name__)


_PHASE_RE = re.compile(r"([A-Z][a-z]+(?: [a-z]+)*):\s+(\d{1,3})%")
# Where each of git's phases sits inside the span an operation gives git (fractions).
_PHASES = {
    "Counting objects": (0.0, 0.05),
    "Compressing objects": (0.05, 0.15),
    "Receiving objects": (0.15, 0.75),
    "Writing objects": (0.15, 0.9),
    "Resolving deltas": (0.75, 0.9),
    "Updating files": (0.9, 1.0),
}


class Progress:
    """One rising 0..100 scale over git's phase percentages and Corral's own steps (MCP progress
    must only grow). Messages are redacted; a failing reporter never fails the operation."""

    def __init__(self, report: OnProgress | None, secret_values: Sequence[str]) -> None:
        self._report = report
        self._secrets = secret_values
        self.value = 0.0

    async def step(self, value: float, message: str) -> None:
        if self._report is None or value <= self.value:
            return
        self.value = value
        try:
            await self._report(round(value, 1), 100.0, redact(message, self._secrets)[:300])
        except Exception as exc:
            log.debug("progress report failed: %r", exc)

    def git(self, start: float, end: float) -> Listener:
        """A stderr listener that maps git's --progress lines into [start, end]."""
        pending = ""

        async def listen(data: bytes) -> None:
            nonlocal pending
            pending += data.decode(errors="replace")
            *lines, pending = re.split(r"[\r\n]", pending)
            for line in lines:
                match = _PHASE_RE.search(line)
                if match and match.group(1) in _PHASES:
                    lo, hi = _PHASES[match.group(1)]
                    frac = lo + (hi - lo) * min(int(match.group(2)), 100) / 100
                    await self.step(start + (end - start) * frac, line.strip())

        return listen
