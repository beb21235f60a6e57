"""Tenants of an HTTP server: their bearer tokens (`corral token ...`) and their quotas.

A token is 256 random bits shown once; only its SHA-256 is stored, so the database never holds a
usable credential. Every HTTP request is checked against the table (one indexed read), so a
revoked token stops working on the very next request, also inside an open MCP session.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import time
from dataclasses import dataclass

from corral.config import Quota, Settings
from corral.errors import InvalidRequest, StoreConflict, StoreError
from corral.sandbox_backend.store import TokenRecord
from corral.sandbox_backend.store.tokens import TokenTable
from corral.service.tenancy import OAUTH_PREFIX, RESERVED, Caller, ExecutionSlots

log = logging.getLogger(__name__)

TOKEN_PREFIX = "crl_"
TOKEN_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
TOUCH_EVERY = 60.0  # seconds: last_used_at is kept to the minute, not written on every request


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_token_name(name: str) -> str:
    if not isinstance(name, str) or not TOKEN_NAME_RE.match(name):
        raise InvalidRequest(
            f"invalid token name {name!r}: use 1-63 characters of a-z, 0-9, '_', '.', '-', starting with a "
            "letter or digit (the name is the tenant's name)"
        )
    if name in RESERVED:
        raise InvalidRequest(
            f"the tenant name {name!r} is reserved ({', '.join(RESERVED)}: stdio/loopback and CORRAL_TOKEN "
            "clients); pick another name"
        )
    return name


def quota_of(rec: TokenRecord) -> Quota:
    return Quota(rec.max_sandboxes, rec.max_memory_mb, rec.max_disk_mb, rec.max_executions)


@dataclass(frozen=True)
class NewToken:
    record: TokenRecord
    secret: str  # shown once, never stored


class Tenants:
    def __init__(self, table: TokenTable, settings: Settings) -> None:
        self._table = table
        self._default_quota = settings.tenant_quota
        self.slots = ExecutionSlots()

    def caller(self, tenant: str, quota: Quota | None = None) -> Caller:
        """The caller for a tenant: its own quota where set, CORRAL_TENANT_QUOTA elsewhere."""
        return Caller(tenant, (quota or Quota()).over(self._default_quota))

    def oauth_caller(self, claim_value: str) -> Caller:
        return self.caller(OAUTH_PREFIX + claim_value)

    # -- tokens (the operator's commands) -----------------------------------------------------------

    async def create(self, name: str, quota: Quota | None = None) -> NewToken:
        check_token_name(name)
        quota = quota or Quota()
        for key, value in (("max_sandboxes", quota.sandboxes), ("max_memory_mb", quota.memory_mb),
                           ("max_disk_mb", quota.disk_mb), ("max_executions", quota.executions)):
            if value is not None and value < 0:
                raise InvalidRequest(f"{key} must be 0 or more (got {value})")
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        rec = TokenRecord(
            name=name,
            hash=token_hash(secret),
            created_at=time.time(),
            max_sandboxes=quota.sandboxes,
            max_memory_mb=quota.memory_mb,
            max_disk_mb=quota.disk_mb,
            max_executions=quota.executions,
        )
        try:
            await self._table.insert(rec)
        except StoreConflict:
            raise InvalidRequest(
                f"a token named {name!r} already exists; revoke it first (`corral token revoke {name}`) or pick "
                "another name"
            ) from None
        return NewToken(rec, secret)

    async def list(self) -> list[TokenRecord]:
        return await self._table.list()

    async def revoke(self, name: str) -> TokenRecord:
        rec = await self._table.get(name)
        if rec is None or not await self._table.delete(name):
            known = ", ".join(r.name for r in await self._table.list()) or "none"
            raise InvalidRequest(f"no token named {name!r} (tokens: {known})")
        return rec

    async def any(self) -> bool:
        return await self._table.any()

    # -- every HTTP request ---------------------------------------------------------------------------

    async def verify(self, secret: str) -> Caller | None:
        """The caller a bearer token stands for, or None if it is not (or no longer) a token here."""
        if not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
            return None
        rec = await self._table.by_hash(token_hash(secret))
        if rec is None:
            return None
        now = time.time()
        if rec.last_used_at is None or now - rec.last_used_at > TOUCH_EVERY:
            try:
                await self._table.update(rec.name, last_used_at=now)
            except StoreError as exc:  # a busy database must not turn a valid token away
                log.warning("could not record the use of token %s: %s", rec.name, exc)
        return self.caller(rec.name, quota_of(rec))
