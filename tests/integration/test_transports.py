"""The HTTP transports of a real `corral serve` process: Streamable HTTP and SSE, with a token."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

from tests.helpers import call_ok, corral_cmd, corral_env, free_port
from tests.helpers import http_server as serve_http
from tests.integration.cleanup import reap_containers

TOKEN = "test-token-0123456789"


@pytest.fixture(scope="module")
def http_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("http-home")
    try:
        with serve_http(home, "--token", TOKEN) as url:
            yield url
    finally:
        reap_containers(home)


async def exercise(client: Client) -> None:
    sandbox = (await call_ok(client, "create_sandbox"))["id"]
    try:
        out = await call_ok(client, "run_code", sandbox=sandbox, code="print(sum(range(10)))")
        assert out["stdout"] == "45\n"
    finally:
        await call_ok(client, "delete_sandbox", sandbox=sandbox)


async def test_streamable_http_with_token(http_server: str) -> None:
    auth = httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120)
    with anyio.fail_after(120):
        async with auth, Client(streamable_http_client(f"{http_server}/mcp", http_client=auth)) as client:
            await exercise(client)


async def test_sse_with_token(http_server: str) -> None:
    with anyio.fail_after(120):
        async with Client(sse_client(f"{http_server}/sse", headers={"Authorization": f"Bearer {TOKEN}"})) as client:
            await exercise(client)


async def test_requests_without_the_token_are_refused(http_server: str) -> None:
    async with httpx2.AsyncClient(timeout=10) as http:
        for path in ["/mcp", "/sse", "/messages/"]:
            response = await http.post(f"{http_server}{path}", json={})
            assert response.status_code == 401, path
            assert "Bearer" in response.headers.get("www-authenticate", "")
        wrong = await http.post(f"{http_server}/mcp", json={}, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401


async def test_dns_rebinding_is_blocked(http_server: str) -> None:
    async with httpx2.AsyncClient(timeout=10) as http:
        response = await http.post(
            f"{http_server}/mcp", json={}, headers={"Authorization": f"Bearer {TOKEN}", "Host": "evil.example:80"}
        )
        assert response.status_code in (400, 403, 421)


def test_non_loopback_bind_without_token_is_refused(tmp_path: Path) -> None:
    proc = subprocess.run(
        corral_cmd("serve", "--transport", "http", "--host", "0.0.0.0", "--port", str(free_port())),
        env=corral_env(tmp_path), capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode != 0
    assert "CORRAL_TOKEN" in proc.stderr and "--insecure-no-auth" in proc.stderr
