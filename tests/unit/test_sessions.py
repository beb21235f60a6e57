"""SessionGuard's rules against a stand-in for the SDK's session manager: per-client caps, the
least recently used idle session making room, 429 when every session is busy, the total cap."""

from __future__ import annotations

import itertools
import json
from typing import Any

import anyio
import httpx2
import pytest
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from starlette.types import Receive, Scope, Send

from corral.server.auth import access_token
from corral.server.sessions import SessionGuard
from corral.service.tenancy import Caller
from tests.helpers import wait_until


class FakeSessions:
    """Opens a session per POST without an id; ends one on DELETE; a POST to a session whose
    body says {"hold": true} stays in flight until `release` is set."""

    def __init__(self) -> None:
        self.alive: set[str] = set()
        self.deleted: list[str] = []
        self.release = anyio.Event()
        self._ids = (f"s{i}" for i in itertools.count(1))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        sid = dict(scope["headers"]).get(b"mcp-session-id", b"").decode() or None
        headers: list[tuple[bytes, bytes]] = []
        status = 200
        if sid is None:
            sid = next(self._ids)
            self.alive.add(sid)
            headers.append((b"mcp-session-id", sid.encode()))
        elif sid not in self.alive:
            status = 404
        elif scope["method"] == "DELETE":
            self.alive.discard(sid)
            self.deleted.append(sid)
        elif json.loads(body or b"{}").get("hold"):
            await self.release.wait()
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"{}"})


def with_tenant(app: Any, tenant: str) -> Any:
    """What TenantGate does: put the tenant's identity on the request."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope["user"] = AuthenticatedUser(access_token(Caller(tenant), "t"))
        await app(scope, receive, send)

    return wrapped


@pytest.fixture
def sessions() -> FakeSessions:
    return FakeSessions()


def client(guard: SessionGuard, tenant: str) -> httpx2.AsyncClient:
    transport = httpx2.ASGITransport(app=with_tenant(guard, tenant))
    return httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1:8765")


def busy(guard: SessionGuard) -> int:
    return sum(s.in_flight for s in guard._sessions.values())


async def open_session(http: httpx2.AsyncClient) -> httpx2.Response:
    return await http.post("/mcp", json={})


async def hold(http: httpx2.AsyncClient, sid: str) -> None:
    await http.post("/mcp", json={"hold": True}, headers={"mcp-session-id": sid})


async def test_a_client_over_its_cap_closes_its_own_least_recently_used_idle_session(sessions: FakeSessions) -> None:
    guard = SessionGuard(sessions, per_client=2, total=100)
    async with client(guard, "a") as a, client(guard, "b") as b:
        await open_session(b)
        s1 = (await open_session(a)).headers["mcp-session-id"]
        s2 = (await open_session(a)).headers["mcp-session-id"]
        await a.post("/mcp", json={}, headers={"mcp-session-id": s1})  # s1 used again: s2 is now the oldest
        assert (await open_session(a)).status_code == 200
        assert sessions.deleted == [s2]
        assert guard.sessions_of("a") == 2 and guard.sessions_of("b") == 1


async def test_a_client_whose_sessions_are_all_busy_gets_429_and_others_are_unaffected(
    sessions: FakeSessions,
) -> None:
    guard = SessionGuard(sessions, per_client=2, total=100)
    async with client(guard, "a") as a, client(guard, "b") as b, anyio.create_task_group() as tg:
        ids = [(await open_session(a)).headers["mcp-session-id"] for _ in range(2)]
        for sid in ids:
            tg.start_soon(hold, a, sid)
        await wait_until(lambda: busy(guard) == 2, 10, "both requests are in flight")
        refused = await open_session(a)
        assert refused.status_code == 429
        assert "already has 2 open MCP sessions (the limit is 2)" in refused.json()["error"]["message"]
        assert (await open_session(b)).status_code == 200
        sessions.release.set()
    assert sessions.deleted == []


async def test_the_total_cap_makes_room_from_any_client_and_refuses_503_when_all_are_busy(
    sessions: FakeSessions,
) -> None:
    guard = SessionGuard(sessions, per_client=10, total=2)
    async with client(guard, "a") as a, client(guard, "b") as b, anyio.create_task_group() as tg:
        first = (await open_session(a)).headers["mcp-session-id"]
        await open_session(a)
        assert (await open_session(b)).status_code == 200
        assert sessions.deleted == [first]
        for sid in list(guard._sessions):
            tg.start_soon(hold, a if guard._sessions[sid].principal == "a" else b, sid)
        await wait_until(lambda: busy(guard) == 2, 10, "both requests are in flight")
        assert (await open_session(b)).status_code == 503
        sessions.release.set()


async def test_sessions_the_sdk_ended_are_forgotten(sessions: FakeSessions) -> None:
    guard = SessionGuard(sessions, per_client=1, total=10)
    async with client(guard, "a") as a:
        sid = (await open_session(a)).headers["mcp-session-id"]
        sessions.alive.discard(sid)  # expired inside the SDK
        assert (await a.post("/mcp", json={}, headers={"mcp-session-id": sid})).status_code == 404
        assert guard.sessions_of("a") == 0
        assert (await open_session(a)).status_code == 200 and sessions.deleted == []
