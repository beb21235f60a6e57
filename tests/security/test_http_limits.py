"""Issue 8, finding 6 (HTTP DoS): the HTTP endpoint must stay available under abuse.

- 10,000 `initialize` calls filled the SDK's session table and locked every new client out (503)
  for 30 minutes: sessions are now capped per client, the oldest idle one making room.
- Slowloris: a connection that never finishes its headers was held forever: now closed.
- Connections were unbounded: now capped, the excess answered 503 and closed at once.
- The 4 MiB body cap refused write_file's documented 8 MiB: the cap now fits the file cap.
All traffic stays on this machine: in-process ASGI, or a `corral serve` on a loopback port.
"""

from __future__ import annotations

import base64
import socket
import time
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from corral.config import Settings
from corral.server.http import HttpOptions
from tests.helpers import call_error, call_ok, http_server
from tests.http_app import INIT, MCP_HEADERS, bearer, in_process, initialize


async def ping(http: httpx2.AsyncClient, session: str, token: str | None = None) -> int:
    body = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
    extra = {"mcp-session-id": session, "mcp-protocol-version": "2025-06-18", **bearer(token)}
    response = await http.post("/mcp", json=body, headers={**MCP_HEADERS, **extra})
    return response.status_code


async def test_ten_thousand_initialize_calls_do_not_lock_out_a_new_client(tmp_path: Path) -> None:
    # Before: the 10,000 sessions filled the SDK's table and the next client got 503.
    async with in_process(Settings(home=tmp_path), HttpOptions()) as http:
        first = await initialize(http)
        assert first.status_code == 200
        flood_start = time.monotonic()
        statuses: dict[int, int] = {}
        for _ in range(10_000):
            status = (await initialize(http)).status_code
            statuses[status] = statuses.get(status, 0) + 1
        print(f"10,000 initialize calls in {time.monotonic() - flood_start:.1f} s: {statuses}")
        newcomer = await initialize(http)
        assert newcomer.status_code == 200, newcomer.text
        assert await ping(http, newcomer.headers["mcp-session-id"]) == 200
        # The flood kept at most one client's worth of sessions: the oldest idle one is gone.
        assert await ping(http, first.headers["mcp-session-id"]) == 404


async def test_one_tenant_flooding_sessions_leaves_another_tenants_sessions_alone(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    async with in_process(settings, HttpOptions(sessions_per_client=8)) as http:
        flooder, victim = await make_tokens(settings, "flooder", "victim")
        kept = (await initialize(http, victim)).headers["mcp-session-id"]
        first = (await initialize(http, flooder)).headers["mcp-session-id"]
        for _ in range(200):
            assert (await initialize(http, flooder)).status_code == 200
        assert await ping(http, kept, victim) == 200  # the victim's session survived the flood
        assert await ping(http, first, flooder) == 404  # the flooder's oldest session made room
        assert (await initialize(http, victim)).status_code == 200


async def make_tokens(settings: Settings, *names: str) -> list[str]:
    """Tokens created through the running app's own services (the same database)."""
    from corral.cli._common import open_tenants

    async with open_tenants(settings) as tenants:
        return [(await tenants.create(name)).secret for name in names]


async def test_an_idle_session_expires_quickly(tmp_path: Path) -> None:
    async with in_process(Settings(home=tmp_path), HttpOptions(session_idle_timeout=1.0)) as http:
        session = (await initialize(http)).headers["mcp-session-id"]
        assert await ping(http, session) == 200
        await anyio.sleep(3)  # the idle period is what is tested (any request would restart it)
        assert await ping(http, session) == 404


def _slow_client(port: int, count: int) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # headers never finished
        socks.append(s)
    return socks


def _closed_by_server(s: socket.socket, deadline: float) -> bool:
    """Whether the server closes `s` before `deadline`, while a byte is dripped every 2 s."""
    s.settimeout(2)
    while time.monotonic() < deadline:
        try:
            if s.recv(4096) == b"":
                return True
        except TimeoutError:
            try:
                s.sendall(b"X")  # slowloris drips a byte now and then to look alive
            except OSError:
                return True
        except OSError:
            return True
    return False


async def test_slowloris_connections_are_closed_and_others_are_served(home: Path) -> None:
    # Before: 200 connections that never finish their headers were held for as long as they liked.
    with http_server(home) as url:
        port = int(url.rsplit(":", 1)[1])
        socks = await anyio.to_thread.run_sync(_slow_client, port, 200)
        try:
            async with httpx2.AsyncClient(timeout=30) as http:  # a normal client is served meanwhile
                assert (await http.post(f"{url}/mcp", json=INIT, headers=MCP_HEADERS)).status_code == 200
            deadline = time.monotonic() + 40  # the header timeout is 10 s

            def all_closed() -> int:
                return sum(_closed_by_server(s, deadline) for s in socks)

            closed = await anyio.to_thread.run_sync(all_closed)
            assert closed == len(socks), f"only {closed} of {len(socks)} slow connections were closed"
        finally:
            for s in socks:
                s.close()


def _open_idle(port: int, count: int) -> list[socket.socket]:
    return [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(count)]


def _refused_at_once(s: socket.socket) -> bool:
    s.settimeout(3)
    try:
        data = s.recv(4096)
    except TimeoutError:
        return False
    except OSError:
        return True
    return data == b"" or data.startswith(b"HTTP/1.1 503")


async def test_connections_beyond_the_limit_are_refused_at_once(home: Path) -> None:
    # Before: every connection was accepted and held; the default limit is now 256.
    with http_server(home) as url:
        port = int(url.rsplit(":", 1)[1])
        socks = await anyio.to_thread.run_sync(_open_idle, port, 400)
        try:
            refused = sum(await anyio.to_thread.run_sync(lambda: [_refused_at_once(s) for s in socks[256:]]))
            assert refused == len(socks) - 256, f"{refused} of {len(socks) - 256} excess connections were refused"
        finally:
            for s in socks:
                s.close()


async def test_write_file_takes_its_documented_eight_mib_over_http(home: Path) -> None:
    # Before: the 4 MiB body cap answered 413 to an 8 MiB write_file (documented "Max 8 MiB").
    payload = bytes(range(256)) * (8 * 1024 * 1024 // 256)
    with http_server(home) as url:
        async with httpx2.AsyncClient(timeout=300) as http, Client(
            streamable_http_client(f"{url}/mcp", http_client=http), raise_exceptions=False
        ) as client:
            sandbox = (await call_ok(client, "create_sandbox"))["id"]
            try:
                wrote: dict[str, Any] = await call_ok(
                    client, "write_file", sandbox=sandbox, path="big.bin",
                    content=base64.b64encode(payload).decode(), encoding="base64",
                )
                assert wrote["size"] == len(payload)
                ran = await call_ok(client, "run_command", sandbox=sandbox, command="stat -c %s big.bin")
                assert ran["stdout"].strip() == str(len(payload))
                error = await call_error(
                    client, "write_file", sandbox=sandbox, path="bigger.bin",
                    content=base64.b64encode(payload + b"x").decode(), encoding="base64",
                )
                assert f"the limit is {len(payload)} bytes" in error, error
            finally:
                await call_ok(client, "delete_sandbox", sandbox=sandbox)
