"""The limits one create must stay within: the server's and its tenant's (checked again inside the
insert's transaction, so concurrent creates from any process cannot overshoot together)."""

from __future__ import annotations

from collections.abc import Callable

from corral.config import MIB, Limits, Quota
from corral.errors import InvalidRequest, QuotaExceeded
from corral.sandbox_backend.store import SandboxUsage


class Quotas:
    def __init__(self, server_max: int, tenant: str, quota: Quota, memory_bytes: int, disk_bytes: int = 0) -> None:
        self.server_max = server_max
        self.tenant = tenant
        self.quota = quota
        self.memory_mb = memory_bytes // MIB
        self.disk_mb = disk_bytes // MIB

    def check(self, server: SandboxUsage, mine: SandboxUsage) -> None:
        if server.count >= self.server_max:
            raise QuotaExceeded(
                f"this server allows at most {self.server_max} sandboxes and holds {server.count}; delete one "
                "first (list_sandboxes shows yours)"
            )
        q, who = self.quota, f"tenant {self.tenant!r}"
        if q.sandboxes is not None and mine.count >= q.sandboxes:
            raise QuotaExceeded(
                f"{who} may keep {q.sandboxes} sandbox(es) (quota sandboxes={q.sandboxes}) and has {mine.count}; "
                "delete one first (list_sandboxes shows them)"
            )
        used = mine.memory_bytes // MIB
        if q.memory_mb is not None and used + self.memory_mb > q.memory_mb:
            raise QuotaExceeded(
                f"{who} may use {q.memory_mb} MiB of memory in all (quota memory_mb={q.memory_mb}); its sandboxes "
                f"use {used} MiB and this one asks for {self.memory_mb} MiB. Ask for less memory_mb or delete one"
            )
        used = mine.disk_bytes // MIB
        if q.disk_mb is not None and used + self.disk_mb > q.disk_mb:
            raise QuotaExceeded(
                f"{who} may use {q.disk_mb} MiB of disk in all (quota disk_mb={q.disk_mb}); its sandboxes and "
                f"volumes use {used} MiB and this one asks for {self.disk_mb} MiB"
            )


def volume_check(tenant: str, quota: Quota, size_bytes: int | None) -> Callable[[SandboxUsage], None]:
    """The tenant's disk quota for a new named volume, checked against its sandboxes and volumes."""

    def check(mine: SandboxUsage) -> None:
        asked, used = (size_bytes or 0) // MIB, mine.disk_bytes // MIB
        if quota.disk_mb is not None and used + asked > quota.disk_mb:
            raise QuotaExceeded(
                f"tenant {tenant!r} may use {quota.disk_mb} MiB of disk in all (quota disk_mb={quota.disk_mb}); "
                f"its sandboxes and volumes use {used} MiB and this volume asks for {asked} MiB. Ask for less "
                "size_mb, or delete a volume or sandbox"
            )

    return check


def name_taken(name: str) -> str:
    return f"a sandbox named {name!r} already exists; pick another name or use it"


def check_disk(limits: Limits, disk_mb: int | None) -> int:
    if disk_mb is None:
        return limits.disk_bytes
    top = limits.max_disk_bytes // MIB
    if isinstance(disk_mb, bool) or not isinstance(disk_mb, int) or not Limits.MIN_DISK_MB <= disk_mb <= top:
        raise InvalidRequest(
            f"disk_mb must be between {Limits.MIN_DISK_MB} and {top} on this server (got {disk_mb!r}); "
            f"the default is {limits.disk_bytes // MIB}"
        )
    return disk_mb * MIB
