"""Caps on MCP sessions per client, so one client cannot lock every other one out.

The SDK's Streamable HTTP session manager caps sessions only in total (10,000 by default; a flood
of `initialize` calls filled it and every new client got 503 for the 30-minute idle timeout).
`SessionGuard` sits in front of it and keeps, per client (the tenant; on loopback without
authentication, the local tenant), at most `per_client` sessions: a client that opens one more
ends its own least recently used idle session first (an HTTP DELETE through the SDK, as the
client itself could send), and is refused with 429 only if all of its sessions are busy. The
total is capped the same way across clients. SSE connections (`/sse`) count per client too.

The guard learns sessions from the responses that open them (the `mcp-session-id` header) and
forgets them on DELETE, on a 404 (expired in the SDK), or after the SDK's idle timeout.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from corral.service.tenancy import LOCAL, Caller

log = logging.getLogger(__name__)

SESSION_HEADER = b"mcp-session-id"


def principal_of(scope: Scope) -> str:
    """Whose session this is: the tenant, and for the local tenant also the client address."""
    user = scope.get("user")
    who = getattr(getattr(user, "access_token", None), "caller", None)
    tenant = who.label if isinstance(who, Caller) else "?"
    if tenant == LOCAL:
        client = scope.get("client") or ("?", 0)
        return f"{LOCAL}@{client[0]}"
    return tenant


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


@dataclass
class _Session:
    principal: str
    opened: Scope  # the opening request, to address the session later (its Host, its user)
    last_active: float
    in_flight: int = 0


def _refusal(status: int, message: str) -> ASGIApp:
    body = json.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": -32000, "message": message}}).encode()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if status in (429, 503):
            headers.append((b"retry-after", b"5"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


class SessionGuard:
    def __init__(
        self,
        app: ASGIApp,
        *,
        per_client: int = 64,
        total: int = 1024,
        idle_timeout: float = 600.0,
        mcp_path: str = "/mcp",
        sse_path: str = "/sse",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.per_client = per_client
        self.total = total
        self.idle_timeout = idle_timeout
        self._mcp = mcp_path
        self._sse = sse_path
        self._clock = clock
        self._sessions: dict[str, _Session] = {}
        self._opening: Counter[str] = Counter()  # opening requests not yet answered, per client
        self._streams: Counter[str] = Counter()  # open SSE connections, per client

    def sessions_of(self, principal: str) -> int:
        return sum(1 for s in self._sessions.values() if s.principal == principal)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "").rstrip("/") if scope["type"] == "http" else ""
        if path == self._sse and scope["method"] == "GET":
            await self._sse_stream(scope, receive, send)
        elif path != self._mcp:
            await self.app(scope, receive, send)
        elif (sid := _header(scope, SESSION_HEADER)) is not None:
            await self._in_session(sid, scope, receive, send)
        elif scope["method"] == "POST":
            await self._open(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    # -- sessions ----------------------------------------------------------------------------------

    async def _in_session(self, sid: str, scope: Scope, receive: Receive, send: Send) -> None:
        session = self._sessions.get(sid)
        if session is None or session.principal != principal_of(scope):
            await self.app(scope, receive, send)  # the SDK answers (404 for what is not theirs)
            return
        status: int | None = None

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        session.in_flight += 1
        try:
            await self.app(scope, receive, watch)
        finally:
            session.in_flight -= 1
            session.last_active = self._clock()
            if status == 404 or (scope["method"] == "DELETE" and status is not None and status < 300):
                self._sessions.pop(sid, None)

    async def _open(self, scope: Scope, receive: Receive, send: Send) -> None:
        principal = principal_of(scope)
        refusal = await self._make_room(principal)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        opened: list[str] = []

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] < 400:
                headers = message.get("headers", [])
                sid = next((bytes(v).decode("latin-1") for k, v in headers if k == SESSION_HEADER), None)
                if sid is not None and sid not in self._sessions:
                    self._sessions[sid] = _Session(principal, dict(scope), self._clock(), in_flight=1)
                    opened.append(sid)
            await send(message)

        self._opening[principal] += 1
        try:
            await self.app(scope, receive, watch)
        finally:
            self._opening[principal] -= 1
            if not self._opening[principal]:
                del self._opening[principal]
            for sid in opened:
                session = self._sessions.get(sid)
                if session is not None:
                    session.in_flight -= 1
                    session.last_active = self._clock()

    async def _make_room(self, principal: str) -> ASGIApp | None:
        self._forget_expired()
        mine = [(sid, s) for sid, s in self._sessions.items() if s.principal == principal]
        if len(mine) + self._opening[principal] >= self.per_client:
            if not await self._evict_idle(mine):
                return _refusal(
                    429,
                    f"this client already has {len(mine)} open MCP sessions (the limit is {self.per_client}) and "
                    "all are busy; end one (HTTP DELETE) or try again when one is idle",
                )
        if len(self._sessions) + sum(self._opening.values()) >= self.total:
            if not await self._evict_idle(list(self._sessions.items())):
                return _refusal(503, f"the server has {len(self._sessions)} open MCP sessions (its limit); try again")
        return None

    def _forget_expired(self) -> None:
        """Sessions the SDK has already ended for idleness."""
        cutoff = self._clock() - self.idle_timeout
        for sid in [sid for sid, s in self._sessions.items() if s.in_flight == 0 and s.last_active < cutoff]:
            del self._sessions[sid]

    async def _evict_idle(self, candidates: list[tuple[str, _Session]]) -> bool:
        idle = [(sid, s) for sid, s in candidates if s.in_flight == 0]
        if not idle:
            return False
        sid, session = min(idle, key=lambda item: item[1].last_active)
        self._sessions.pop(sid, None)
        log.info("closing idle MCP session %s… of %s to make room for a new one", sid[:8], session.principal)
        # End it the way its client could: DELETE with its session id, as the same user.
        scope = {
            **session.opened,
            "method": "DELETE",
            "query_string": b"",
            "headers": [(b"host", (_header(session.opened, b"host") or "localhost").encode("latin-1")),
                        (SESSION_HEADER, sid.encode("latin-1"))],
        }
        sent = False

        async def receive() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": b"", "more_body": False}
            return {"type": "http.disconnect"}

        async def discard(message: Message) -> None:
            pass

        try:
            await self.app(scope, receive, discard)
        except Exception:
            log.exception("could not close MCP session %s…", sid[:8])
        return True

    # -- SSE connections ---------------------------------------------------------------------------

    async def _sse_stream(self, scope: Scope, receive: Receive, send: Send) -> None:
        principal = principal_of(scope)
        if self._streams[principal] >= self.per_client:
            await _refusal(
                429, f"this client already has {self._streams[principal]} SSE connections open (the limit is "
                f"{self.per_client}); close one first",
            )(scope, receive, send)
            return
        if sum(self._streams.values()) >= self.total:
            await _refusal(503, "the server has too many SSE connections open; try again later")(scope, receive, send)
            return
        self._streams[principal] += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self._streams[principal] -= 1
            if not self._streams[principal]:
                del self._streams[principal]
