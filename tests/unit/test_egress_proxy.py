"""The egress proxy over real sockets on loopback, judged by a scripted gate: CONNECT tunnels, plain
HTTP rewriting, secrets, refusals, SNI and Host checks, body framing, cutting, the upstream proxy."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import pytest
import trustme

from corral.service.network.identity import Identity
from corral.service.network.mitm import Authority
from corral.service.network.policy import Address, Verdict, parse_entry
from corral.service.network.proxy import EgressProxy, Interception, UpstreamProxy

AUTH = "Basic " + base64.b64encode(b"sb-1:pw").decode()
LOOPBACK = ipaddress.ip_address("127.0.0.1")
WAIT = 30


@dataclass
class ScriptedGate:
    allowed: dict[str, tuple[Address, ...]] = field(default_factory=dict)  # host -> addresses
    headers: list[tuple[str, str]] = field(default_factory=list)
    reports: list[str] = field(default_factory=list)
    cuts: list[Callable[[], None]] = field(default_factory=list)

    def identify(self, authorization: str | None) -> Identity | None:
        return Identity("sb-1") if authorization == AUTH else None

    async def decide(self, who: Identity, host: str, port: int) -> Verdict:
        if host in self.allowed:
            return Verdict(True, f"allow {host!r}", self.allowed[host])
        return Verdict(False, f"{host}:{port} is not in this sandbox's allowlist")

    def report(self, who: Identity, host: str, port: int, rule: str) -> None:
        self.reports.append(rule)

    def inject(self, who: Identity, host: str, port: int) -> list[tuple[str, str]]:
        return list(self.headers)

    def intercepts(self, who: Identity, host: str, port: int) -> bool:
        return bool(self.headers)

    def track(
        self, who: Identity, host: str, port: int, address: Address, cut: Callable[[], None]
    ) -> Callable[[], None]:
        self.cuts.append(cut)
        return lambda: None


@dataclass
class Upstream:
    """A server on loopback that keeps what it received and answers with `reply` (or echoes)."""

    port: int
    received: bytearray
    reply: bytes | None


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    box = Upstream(0, bytearray(), None)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if box.reply is not None:
                box.received += await reader.readuntil(b"\r\n\r\n")
                await asyncio.sleep(0.2)  # let anything sent after the head arrive (it must not)
                while True:
                    try:
                        box.received += await asyncio.wait_for(reader.read(65536), 0.3)
                    except TimeoutError:
                        break
                    if reader.at_eof():
                        break
                writer.write(box.reply)
            else:
                while data := await reader.read(65536):
                    box.received += data
                    writer.write(data)
                    await writer.drain()
            await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    box.port = server.sockets[0].getsockname()[1]
    yield box
    server.close()


@pytest.fixture
async def proxy() -> AsyncIterator[tuple[EgressProxy, ScriptedGate, int]]:
    gate = ScriptedGate()
    egress = EgressProxy(gate)
    await egress.start("127.0.0.1", 0)
    assert egress._server is not None
    port = egress._server.sockets[0].getsockname()[1]
    yield egress, gate, port
    await egress.close()


async def ask(port: int, head: str, body: bytes = b"") -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head.encode() + body)
    await writer.drain()
    return reader, writer


async def answer(reader: asyncio.StreamReader) -> bytes:
    with anyio.fail_after(WAIT):
        return await reader.read()


def client_hello(name: str) -> bytes:
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ssl.create_default_context().wrap_bio(incoming, outgoing, server_hostname=name)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def connect(host: str, port: int) -> str:
    return f"CONNECT {host}:{port} HTTP/1.1\r\nProxy-Authorization: {AUTH}\r\n\r\n"


async def test_connect_tunnels_bytes_untouched(
    proxy: tuple[EgressProxy, ScriptedGate, int], upstream: Upstream
) -> None:
    _, gate, port = proxy
    gate.allowed["svc.test"] = (LOOPBACK,)
    reader, writer = await ask(port, connect("svc.test", upstream.port))
    with anyio.fail_after(WAIT):
        assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 200 Connection established\r\n\r\n"
        hello = client_hello("svc.test")
        writer.write(hello + b"and more")
        await writer.drain()
        echoed = await reader.readexactly(len(hello) + 8)
    assert echoed == hello + b"and more" and bytes(upstream.received) == echoed
    assert len(gate.cuts) == 1
    gate.cuts[0]()  # a policy change cuts the tunnel
    with anyio.fail_after(WAIT):
        assert await reader.read() == b""
    writer.close()


async def test_a_tunnel_whose_tls_names_another_host_is_cut(
    proxy: tuple[EgressProxy, ScriptedGate, int], upstream: Upstream
) -> None:
    _, gate, port = proxy
    gate.allowed["svc.test"] = (LOOPBACK,)
    reader, writer = await ask(port, connect("svc.test", upstream.port))
    with anyio.fail_after(WAIT):
        await reader.readuntil(b"\r\n\r\n")
    hello = client_hello("evil.test")
    for i in range(0, len(hello), 7):  # in small pieces: the proxy still reads the whole hello
        writer.write(hello[i : i + 7])
        await writer.drain()
    assert await answer(reader) == b""
    assert upstream.received == b"" and "names 'evil.test', not 'svc.test'" in gate.reports[0]
    writer.close()


async def test_plain_http_is_rewritten_for_the_origin_with_secrets_replaced(
    proxy: tuple[EgressProxy, ScriptedGate, int], upstream: Upstream
) -> None:
    _, gate, port = proxy
    gate.allowed["svc.test"] = (LOOPBACK,)
    gate.headers = [("X-Api-Key", "the-secret")]
    upstream.reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    body = b"0123456789"
    head = (
        f"POST http://svc.test:{upstream.port}/p?q=1 HTTP/1.1\r\nHost: svc.test:{upstream.port}\r\n"
        f"Proxy-Authorization: {AUTH}\r\nProxy-Connection: keep-alive\r\nConnection: keep-alive, X-Drop\r\n"
        f"X-Drop: 1\r\nX-Api-Key: sandbox-made-up\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    # Bytes after the body (a pipelined request) must never reach the server.
    reader, writer = await ask(port, head, body + b"GET http://other.test/ HTTP/1.1\r\n\r\n")
    assert (await answer(reader)).endswith(b"\r\n\r\nok")
    sent = bytes(upstream.received)
    request_head, _, sent_body = sent.partition(b"\r\n\r\n")
    lines = request_head.decode().split("\r\n")
    assert lines[0] == "POST /p?q=1 HTTP/1.1"
    assert f"Host: svc.test:{upstream.port}" in lines and "Connection: close" in lines
    assert "X-Api-Key: the-secret" in lines and "sandbox-made-up" not in sent.decode()
    assert not [line for line in lines if line.lower().startswith(("proxy-", "x-drop"))]
    assert sent_body == body
    writer.close()


async def test_chunked_bodies_are_framed(proxy: tuple[EgressProxy, ScriptedGate, int], upstream: Upstream) -> None:
    _, gate, port = proxy
    gate.allowed["svc.test"] = (LOOPBACK,)
    upstream.reply = b"HTTP/1.1 204 No Content\r\n\r\n"
    chunked = b"5\r\nhello\r\n0\r\n\r\n"
    head = (
        f"PUT http://svc.test:{upstream.port}/ HTTP/1.1\r\nProxy-Authorization: {AUTH}\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    )
    reader, writer = await ask(port, head, chunked + b"trailing junk")
    assert (await answer(reader)).startswith(b"HTTP/1.1 204")
    assert upstream.received.endswith(chunked)
    writer.close()


@pytest.mark.parametrize(
    ("head", "status", "says"),
    [
        ("GET http://svc.test/ HTTP/1.1\r\n\r\n", b"407", b"HTTP_PROXY"),
        (f"GET http://evil.test/x HTTP/1.1\r\nProxy-Authorization: {AUTH}\r\n\r\n", b"403",
         b"Blocked by Corral egress policy: evil.test:80: evil.test:80 is not in this sandbox's allowlist"),
        (f"CONNECT evil.test:443 HTTP/1.1\r\nProxy-Authorization: {AUTH}\r\n\r\n", b"403", b"evil.test:443"),
        (f"GET http://svc.test/ HTTP/1.1\r\nHost: evil.test\r\nProxy-Authorization: {AUTH}\r\n\r\n", b"403",
         b"the Host header names 'evil.test'"),
        (f"GET https://svc.test/ HTTP/1.1\r\nProxy-Authorization: {AUTH}\r\n\r\n", b"400", b"through CONNECT"),
        ("GARBAGE\r\n\r\n", b"400", b"malformed"),
    ],
)
async def test_refusals_name_their_reason(
    proxy: tuple[EgressProxy, ScriptedGate, int], head: str, status: bytes, says: bytes
) -> None:
    _, gate, port = proxy
    gate.allowed["svc.test"] = (LOOPBACK,)
    reader, writer = await ask(port, head)
    reply = await answer(reader)
    assert reply.startswith(b"HTTP/1.1 " + status) and says in reply, reply
    writer.close()


async def test_a_site_that_is_down_is_a_502_not_a_refusal(proxy: tuple[EgressProxy, ScriptedGate, int]) -> None:
    _, gate, port = proxy
    gate.allowed["down.test"] = (LOOPBACK,)
    with socketless_port() as closed:
        head = f"GET http://down.test:{closed}/ HTTP/1.1\r\nProxy-Authorization: {AUTH}\r\n\r\n"
        reader, writer = await ask(port, head)
        reply = await answer(reader)
    assert reply.startswith(b"HTTP/1.1 502") and b"connection refused" in reply
    writer.close()


class socketless_port:
    """A loopback port nothing listens on (bound without listening, so nobody else takes it)."""

    def __enter__(self) -> int:
        import socket

        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        return int(self._sock.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        self._sock.close()


async def test_the_upstream_proxy_is_asked_for_the_checked_address_not_the_name(upstream: Upstream) -> None:
    gate = ScriptedGate()
    public = ipaddress.ip_address("93.184.216.34")  # never contacted: the fake upstream proxy answers
    gate.allowed["svc.test"] = (public,)
    egress = EgressProxy(gate, UpstreamProxy.parse(f"http://user:p%40ss@127.0.0.1:{upstream.port}"))
    await egress.start("127.0.0.1", 0)
    assert egress._server is not None
    port = egress._server.sockets[0].getsockname()[1]
    upstream.reply = b"HTTP/1.1 200 Connection established\r\n\r\n"
    try:
        reader, writer = await ask(port, connect("svc.test", 443))
        with anyio.fail_after(WAIT):
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
        sent = bytes(upstream.received).decode()
        assert sent.startswith("CONNECT 93.184.216.34:443 HTTP/1.1") and "svc.test" not in sent
        assert "Proxy-Authorization: Basic " + base64.b64encode(b"user:p@ss").decode() in sent
        writer.close()
    finally:
        await egress.close()


async def test_secrets_reach_https_hosts_through_the_proxys_own_tls(tmp_path: Path) -> None:
    authority = Authority.load(tmp_path, [parse_entry("svc.test")])
    server_ca = trustme.CA()
    upstream_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ca.issue_cert("svc.test").configure_cert(upstream_tls)
    seen: list[bytes] = []

    async def origin(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(origin, "127.0.0.1", 0, ssl=upstream_tls)
    port = server.sockets[0].getsockname()[1]
    checks_origin = ssl.create_default_context()
    server_ca.configure_trust(checks_origin)
    gate = ScriptedGate(allowed={"svc.test": (LOOPBACK,)}, headers=[("X-Api-Key", "the-secret")])
    egress = EgressProxy(gate, None, Interception(authority, checks_origin))
    await egress.start("127.0.0.1", 0)
    assert egress._server is not None
    proxy_port = egress._server.sockets[0].getsockname()[1]
    try:
        reader, writer = await ask(proxy_port, connect("svc.test", port))
        with anyio.fail_after(WAIT):
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
            sandbox_trust = ssl.create_default_context(cadata=authority.pem.decode())
            await writer.start_tls(sandbox_trust, server_hostname="svc.test")
            writer.write(f"GET /api HTTP/1.1\r\nHost: svc.test:{port}\r\nX-Api-Key: made-up\r\n\r\n".encode())
            assert (await reader.read()).endswith(b"\r\n\r\nok")
        lines = seen[0].decode().split("\r\n")
        assert lines[0] == "GET /api HTTP/1.1" and "X-Api-Key: the-secret" in lines
        assert "made-up" not in seen[0].decode()
        writer.close()
    finally:
        await egress.close()
        server.close()


async def test_the_egress_ca_vouches_only_for_the_names_secrets_are_bound_to(tmp_path: Path) -> None:
    authority = Authority.load(tmp_path, [parse_entry("*.svc.test")])
    assert Authority.load(tmp_path, [parse_entry("*.svc.test")]).pem == authority.pem  # kept in the data dir
    assert Authority.load(tmp_path, [parse_entry("other.test")]).pem != authority.pem

    async def handshake(name: str) -> None:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=authority.context_for(name))
        port = server.sockets[0].getsockname()[1]
        try:
            trusting = ssl.create_default_context(cadata=authority.pem.decode())
            _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=trusting, server_hostname=name)
            writer.close()
        finally:
            server.close()

    with anyio.fail_after(WAIT):
        await handshake("api.svc.test")
        with pytest.raises(ssl.SSLCertVerificationError):
            await handshake("bank.test")  # a certificate the CA signed, outside its name constraints
