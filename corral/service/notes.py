"""What a tool call should tell the model besides its own result.

While a tool call runs (`collecting()`, opened by the tools layer), the service notes what the
model should know whatever the tool: a stopped sandbox was resumed (and whether its memory came
back), the lease of every sandbox the call touched, a lifetime about to end. The tools layer adds
them to the result; outside a tool call (background tasks, the CLI) noting does nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field


@dataclass
class CallNotes:
    notices: list[str] = field(default_factory=list)
    # sandbox id -> its compact lease ({"stops_at": ..., "expires_at": ...} or None: no lease)
    leases: dict[str, dict[str, str] | None] = field(default_factory=dict)


_CURRENT: ContextVar[CallNotes | None] = ContextVar("corral_call_notes", default=None)


@contextmanager
def collecting() -> Iterator[CallNotes]:
    notes = CallNotes()
    token = _CURRENT.set(notes)
    try:
        yield notes
    finally:
        _CURRENT.reset(token)


def notice(text: str) -> None:
    notes = _CURRENT.get()
    if notes is not None and text not in notes.notices:
        notes.notices.append(text)


def lease(sandbox_id: str, value: dict[str, str] | None) -> None:
    notes = _CURRENT.get()
    if notes is not None:
        notes.leases[sandbox_id] = value


def detached() -> None:
    """Called first in a background task started from a tool call: its notes are not the call's."""
    _CURRENT.set(None)
