"""Leases: when a sandbox will be stopped for idleness or deleted for age, and what to say about it.

A sandbox's idle lease (`stops_at`) runs from its last tool call and is renewed by every call; its
absolute lifetime (`expires_at`) is fixed at creation (update_sandbox can move it). Every tool
result that touches a sandbox carries the compact form of both, and in the last tenth of the
lifetime a warning.
"""

from __future__ import annotations

import time

from corral.sandbox_backend.store import SandboxRecord

WARN_FRACTION = 0.1  # the last tenth of delete_after


def iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def stops_at(rec: SandboxRecord, last_used: float) -> float | None:
    """When the idle rule stops this sandbox (None: it never will, or it is not running)."""
    if rec.idle_stop_after is None or rec.status != "running":
        return None
    return last_used + rec.idle_stop_after


def compact(rec: SandboxRecord, last_used: float) -> dict[str, str] | None:
    lease = {}
    stop = stops_at(rec, last_used)
    if stop is not None:
        lease["stops_at"] = iso(stop)
    if rec.expires_at is not None:
        lease["expires_at"] = iso(rec.expires_at)
    return lease or None


def expiry_warning(rec: SandboxRecord, now: float) -> str | None:
    if rec.expires_at is None or rec.delete_after is None:
        return None
    left = rec.expires_at - now
    if left > rec.delete_after * WARN_FRACTION:
        return None
    return (
        f"sandbox {rec.id} will be DELETED in {_span(max(left, 0))} (at {iso(rec.expires_at)}, its delete_after "
        "lifetime): save what you need (download, snapshot_sandbox) or extend it with update_sandbox(delete_after=...)"
    )


def _span(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 120:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"
