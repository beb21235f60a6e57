"""Who is calling: the tenant every service call acts for, and what that tenant may hold.

The tool layer (`tools/_base.py:audited`) establishes the caller of each tool call from the
request's authentication, for the duration of the call, with `acting_as`; the services read it with
`caller()`. Every object a tenant can own carries a `tenant` column, and the one check is
`caller().sees(record.tenant)` (or a query scoped by `caller().tenant`): sandboxes do it in
`SandboxService.resolve`/`list_all`/`create`, and what lives inside a sandbox (processes, ports,
contexts, files) is reached only through its sandbox, so it inherits the sandbox's owner.
A new kind of object (a snapshot, a volume) adds the column and the check; nothing else.

`OPERATOR` (tenant None) sees every tenant: the `corral` commands and the server's own background
work act as it. Code that sets no caller acts for the local tenant (stdio), never for everyone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field

from corral.config import Quota
from corral.errors import QuotaExceeded

LOCAL = "local"  # stdio clients, and HTTP clients on loopback when no authentication is configured
DEFAULT = "default"  # HTTP clients with CORRAL_TOKEN / --token
OAUTH_PREFIX = "oauth:"  # tenants named by a JWT claim: never equal to a token's name or the above
RESERVED = (LOCAL, DEFAULT)


@dataclass(frozen=True)
class Caller:
    tenant: str | None  # None: the operator, who sees every tenant
    quota: Quota = field(default_factory=Quota)

    def sees(self, tenant: str) -> bool:
        return self.tenant is None or self.tenant == tenant

    @property
    def is_operator(self) -> bool:
        return self.tenant is None

    @property
    def label(self) -> str:
        return self.tenant if self.tenant is not None else "(operator)"

    @property
    def may_use_host_dirs(self) -> bool:
        """upload/download reach directories every tenant would share: only the machine's own
        users (stdio, loopback) and a single-token server's one tenant may use them."""
        return self.tenant in (None, LOCAL, DEFAULT)


OPERATOR = Caller(None)
LOCAL_CALLER = Caller(LOCAL)
_caller: ContextVar[Caller] = ContextVar("corral_caller", default=LOCAL_CALLER)


def caller() -> Caller:
    return _caller.get()


@contextlib.contextmanager
def acting_as(who: Caller) -> Iterator[Caller]:
    token = _caller.set(who)
    try:
        yield who
    finally:
        _caller.reset(token)


@dataclass
class CallNote:
    """What a tool call touched, for its audit record: the sandbox it resolved (by id)."""

    sandbox_id: str | None = None


_note: ContextVar[CallNote | None] = ContextVar("corral_call_note", default=None)


@contextlib.contextmanager
def noting(note: CallNote) -> Iterator[CallNote]:
    token = _note.set(note)
    try:
        yield note
    finally:
        _note.reset(token)


def note_sandbox(sandbox_id: str) -> None:
    """Record the first sandbox a call resolves (later ones are internal follow-ups)."""
    note = _note.get()
    if note is not None and note.sandbox_id is None:
        note.sandbox_id = sandbox_id


class ExecutionSlots:
    """Concurrent executions per tenant (this server process), refused rather than queued so the
    caller learns at once that it is over its quota."""

    def __init__(self) -> None:
        self._running: dict[str, int] = {}

    def running(self, tenant: str) -> int:
        return self._running.get(tenant, 0)

    @contextlib.contextmanager
    def hold(self, who: Caller) -> Iterator[None]:
        key, limit = who.label, who.quota.executions
        current = self._running.get(key, 0)
        if limit is not None and current >= limit:
            raise QuotaExceeded(
                f"tenant {key!r} may run {limit} execution(s) at once (quota executions={limit}) and {current} "
                "are running now; wait for one to finish"
            )
        self._running[key] = current + 1
        try:
            yield
        finally:
            left = self._running[key] - 1
            if left:
                self._running[key] = left
            else:
                del self._running[key]
