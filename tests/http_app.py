"""Driving Corral's HTTP app in-process (ASGI, no socket) with raw JSON-RPC, for tests of the
HTTP layer itself: authentication, tenants, session limits."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2

from corral.config import Settings
from corral.sandbox_backend.engine import Engine
from corral.server.http import HttpOptions, build_http_app

BASE = "http://127.0.0.1:8765"
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}},
}


@asynccontextmanager
async def in_process(
    settings: Settings, opts: HttpOptions | None = None, engine: Engine | None = None
) -> AsyncIterator[httpx2.AsyncClient]:
    """The HTTP app with its lifespan running, reached through ASGI."""
    app, _ = build_http_app(settings, opts or HttpOptions(), engine=engine)
    async with app.router.lifespan_context(app):  # type: ignore[attr-defined]
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url=BASE, timeout=60) as http:
            yield http


def bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


async def initialize(http: httpx2.AsyncClient, token: str | None = None) -> httpx2.Response:
    return await http.post("/mcp", json=INIT, headers={**MCP_HEADERS, **bearer(token)})


def rpc_result(response: httpx2.Response) -> dict[str, Any]:
    """The JSON-RPC message of a response (JSON, or the data line of an SSE stream)."""
    assert response.status_code == 200, (response.status_code, response.text)
    text = response.text
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        text = next(line[5:] for line in text.splitlines() if line.startswith("data:") and line[5:].strip())
    message: dict[str, Any] = json.loads(text)
    return message


async def call_tool(http: httpx2.AsyncClient, token: str | None, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    """initialize, then one tools/call in that session; returns the call's result."""
    opened = await initialize(http, token)
    rpc_result(opened)
    session = {"mcp-session-id": opened.headers["mcp-session-id"], "mcp-protocol-version": "2025-06-18"}
    headers = {**MCP_HEADERS, **session, **bearer(token)}
    await http.post("/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
    body = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": tool, "arguments": args}}
    result: dict[str, Any] = rpc_result(await http.post("/mcp", json=body, headers=headers))["result"]
    return result
