"""The egress proxy: the only way out of a sandbox network. It speaks HTTP CONNECT (any TLS or TCP,
tunnelled untouched) and plain HTTP requests in absolute form, and for every connection asks its
`Gate` who is asking (proxy credentials) and whether this destination is allowed; the gate
resolves the name and decides on the addresses, and the proxy connects to exactly one of those
addresses (so a second DNS answer cannot move the connection elsewhere).

A refusal is an HTTP 403 whose reason phrase and body name the rule, so a program in the sandbox
(and the model reading its error) can tell "blocked by policy" from "the site is down" (502).
CONNECT tunnels must present the name they asked for in the TLS ClientHello (SNI), and plain
requests must name the same host in `Host`, so one allowed name cannot front for another.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import unquote, urlsplit

from corral.service.network.httpwire import (
    HOP_BY_HOP,
    MAX_HEAD,
    Head,
    WireError,
    absolute_target,
    client_hello_sni,
    copy_body,
    parse_head,
    read_head,
    response,
    split_authority,
)
from corral.service.network.identity import Identity
from corral.service.network.mitm import Authority
from corral.service.network.policy import Address, Verdict, forbidden_reason, parse_address
from corral.service.network.pump import Relay, detach, transport_of

log = logging.getLogger("corral.egress")

HEAD_TIMEOUT = 30.0
CONNECT_TIMEOUT = 15.0
HELLO_TIMEOUT = 10.0
RELAY_CHUNK = 256 * 1024
MAX_PER_IDENTITY = 256  # open connections one sandbox may hold through the proxy
MAX_OPEN = 4096  # open connections through the proxy in all (each relay holds a thread or two)


class Gate(Protocol):
    def identify(self, authorization: str | None) -> Identity | None: ...

    async def decide(self, who: Identity, host: str, port: int) -> Verdict:
        """Resolve, decide, log and count one connection."""
        ...

    def report(self, who: Identity, host: str, port: int, rule: str) -> None:
        """A connection the gate allowed was refused later (e.g. its TLS named another host)."""
        ...

    def inject(self, who: Identity, host: str, port: int) -> list[tuple[str, str]]:
        """Headers to add to a request (secrets bound to the host)."""
        ...

    def intercepts(self, who: Identity, host: str, port: int) -> bool:
        """Whether a tunnel to host:port is opened to add headers (secrets bound to the host)."""
        ...

    def track(
        self, who: Identity, host: str, port: int, address: Address, cut: Callable[[], None]
    ) -> Callable[[], None]:
        """Remember an open connection (cut when the policy stops allowing it); returns the forget call."""
        ...


class UpstreamFailed(Exception):
    pass


@dataclass(frozen=True)
class UpstreamProxy:
    """An operator's proxy that carries connections to public addresses (CORRAL_UPSTREAM_PROXY)."""

    host: str
    port: int
    authorization: str | None = None

    @classmethod
    def parse(cls, url: str) -> UpstreamProxy:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", "") or not parts.hostname:
            raise ValueError(f"{url!r} is not an http:// proxy URL")
        auth = None
        if parts.username is not None:
            raw = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            auth = "Basic " + base64.b64encode(raw).decode()
        return cls(parts.hostname, parts.port or 3128, auth)


def authority(host: str, port: int, default: int | None = None) -> str:
    shown = f"[{host}]" if ":" in host else host
    return shown if port == default else f"{shown}:{port}"


@dataclass(frozen=True)
class Interception:
    """What the proxy needs to add secrets to HTTPS requests (mitm.py)."""

    authority: Authority
    upstream: ssl.SSLContext  # how the proxy checks the real server


class EgressProxy:
    def __init__(
        self, gate: Gate, upstream: UpstreamProxy | None = None, interception: Interception | None = None
    ) -> None:
        self._gate = gate
        self._upstream = upstream
        self._interception = interception
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._open: dict[str, int] = {}
        self.address: tuple[str, int] | None = None

    @property
    def serving(self) -> bool:
        return self._server is not None

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(
            self._serve, host, port, reuse_address=True, limit=MAX_HEAD, backlog=1024
        )
        self.address = (host, port)
        log.info("egress proxy listening on %s", authority(host, port))

    async def close(self) -> None:
        server, self._server = self._server, None
        self.address = None
        if server is None:
            return
        server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:  # a cancelled connection cuts its relay and waits for its threads to let go
            await asyncio.wait(tasks, timeout=5)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 5)

    # -- one client connection ----------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._handle(reader, writer)
        except WireError as exc:
            await _reply(writer, response(400, "Bad Request", f"Corral egress proxy: {exc}\n"))
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError, asyncio.CancelledError):
            pass
        except Exception:
            log.exception("egress proxy: unexpected failure")
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with asyncio.timeout(HEAD_TIMEOUT):
            raw = await read_head(reader)
        if raw is None:
            return
        head = parse_head(raw)
        who = self._gate.identify(head.get("proxy-authorization"))
        if who is None:
            await _reply(writer, response(
                407, "Proxy Authentication Required",
                "Corral egress proxy: use the proxy URL from this sandbox's HTTP_PROXY / HTTPS_PROXY "
                "environment (it carries the sandbox's credentials)\n",
                {"Proxy-Authenticate": 'Basic realm="corral"'},
            ))
            return
        if self._open.get(who.key, 0) >= MAX_PER_IDENTITY or sum(self._open.values()) >= MAX_OPEN:
            limit = f"at most {MAX_PER_IDENTITY} per sandbox and {MAX_OPEN} in all at once"
            await _reply(writer, response(503, "Too many connections through the egress proxy", limit + "\n"))
            return
        self._open[who.key] = self._open.get(who.key, 0) + 1
        try:
            method, target = head.first[0].upper(), head.first[1]
            if method == "CONNECT":
                host, port = split_authority(target, None)
                await self._tunnel(who, host, port, reader, writer)
            else:
                await self._forward(who, head, reader, writer)
        finally:
            self._open[who.key] -= 1
            if not self._open[who.key]:
                del self._open[who.key]

    async def _admit(self, who: Identity, host: str, port: int, writer: asyncio.StreamWriter) -> Verdict | None:
        verdict = await self._gate.decide(who, host, port)
        if not verdict.allowed:
            await _reply(writer, refusal(host, port, verdict.rule))
            return None
        return verdict

    async def _tunnel(
        self, who: Identity, host: str, port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        verdict = await self._admit(who, host, port, writer)
        if verdict is None:
            return
        try:
            up_reader, up_writer, address = await self._connect(host, port, verdict, tunnel=True)
        except UpstreamFailed as exc:
            await _reply(writer, unreachable(host, port, str(exc)))
            return
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        if self._interception is not None and self._gate.intercepts(who, host, port):
            await self._intercept(who, host, port, address, reader, writer, up_reader, up_writer)
            return
        # Until the client's first bytes are checked, what the server says first (an SSH banner)
        # still reaches the client.
        transport_of(up_writer).resume_reading()
        early = asyncio.ensure_future(_pipe(up_reader, writer))
        try:
            first = await _first_flight(reader)
        finally:
            early.cancel()
            await asyncio.gather(early, return_exceptions=True)
        transport_of(up_writer).pause_reading()
        transport_of(writer).pause_reading()
        if first[:1] == b"\x16" and parse_address(host) is None:
            sni = client_hello_sni(first)
            if sni is not None and sni != host:
                rule = f"the TLS connection names {sni!r}, not {host!r} it asked the proxy for"
                self._gate.report(who, host, port, rule)
                up_writer.transport.abort()
                return
        up_writer.write(first + _buffered(reader))
        writer.write(_buffered(up_reader))
        await self._pump(who, host, port, address, [(writer, up_writer), (up_writer, writer)])

    async def _intercept(
        self,
        who: Identity,
        host: str,
        port: int,
        address: Address,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
    ) -> None:
        """One request inside a tunnel whose TLS the proxy ends (with a certificate for `host` only)
        to add the headers bound to `host`; TLS to the server is the proxy's own, checked."""
        assert self._interception is not None
        async with asyncio.timeout(HEAD_TIMEOUT):
            await writer.start_tls(self._interception.authority.context_for(host))
            transport_of(up_writer).resume_reading()
            await up_writer.start_tls(self._interception.upstream, server_hostname=host)
            raw = await read_head(reader)
        if raw is None:
            return
        head = parse_head(raw)
        named = head.get("host")
        if not head.first[1].startswith("/") or (named and split_authority(named, port) != (host, port)):
            rule = f"a request in the tunnel to {authority(host, port)} names another ({named or head.first[1]!r})"
            self._gate.report(who, host, port, rule)
            await _reply(writer, refusal(host, port, rule))
            return
        out = Head(head.first, list(head.headers))
        out.drop(*HOP_BY_HOP, "expect")
        out.put("Host", authority(host, port, 443))
        out.put("Connection", "close")
        for name, value in self._gate.inject(who, host, port):
            out.put(name, value)
        out.first = (head.first[0], head.first[1], "HTTP/1.1")
        if "100-continue" in (head.get("expect") or "").lower():
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        up_writer.write(out.encode())
        await copy_body(head, reader, up_writer)
        def cut() -> None:
            writer.transport.abort()
            up_writer.transport.abort()

        forget = self._gate.track(who, host, port, address, cut)
        try:
            await _pipe(up_reader, writer)  # TLS both ways: the bytes pass through Python
        finally:
            forget()
            up_writer.transport.abort()

    async def _forward(
        self, who: Identity, head: Head, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        target = head.first[1]
        if target.startswith("/"):
            host_header = head.get("host")
            if not host_header:
                raise WireError("a request to a proxy needs an absolute http:// URL or a Host header")
            (host, port), path = split_authority(host_header, 80), target
        else:
            host, port, path = absolute_target(target)
        named = head.get("host")
        if named and split_authority(named, 80) != (host, port):
            rule = f"the Host header names {named!r}, not the URL's host {authority(host, port, 80)!r}"
            self._gate.report(who, host, port, rule)
            await _reply(writer, refusal(host, port, rule))
            return
        verdict = await self._admit(who, host, port, writer)
        if verdict is None:
            return
        try:
            _, up_writer, address = await self._connect(host, port, verdict, tunnel=False)
        except UpstreamFailed as exc:
            await _reply(writer, unreachable(host, port, str(exc)))
            return
        out = Head(head.first, list(head.headers))
        out.drop(*HOP_BY_HOP, "expect")
        out.put("Host", authority(host, port, 80))
        out.put("Connection", "close")
        for name, value in self._gate.inject(who, host, port):
            out.put(name, value)
        if self._via_upstream(address):
            assert self._upstream is not None
            out.first = (head.first[0], f"http://{authority(str(address), port, 80)}{path}", "HTTP/1.1")
            if self._upstream.authorization:
                out.put("Proxy-Authorization", self._upstream.authorization)
        else:
            out.first = (head.first[0], path, "HTTP/1.1")
        if "100-continue" in (head.get("expect") or "").lower():
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # the body goes upstream in any case
        up_writer.write(out.encode())
        # Exactly the announced body, no more: later bytes are never taken for part of this request.
        await copy_body(head, reader, up_writer)
        await up_writer.drain()
        await self._pump(who, host, port, address, [(up_writer, writer)])

    async def _pump(
        self,
        who: Identity,
        host: str,
        port: int,
        address: Address,
        directions: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]],
    ) -> None:
        """Hand the connection's sockets to a kernel relay until it ends; the gate may cut it when
        the sandbox's policy stops allowing it."""
        sockets: dict[int, socket.socket] = {}
        for pair in directions:
            for w in pair:
                if id(w) not in sockets:
                    sockets[id(w)] = await detach(w)
        relay = Relay([(sockets[id(src)], sockets[id(dst)]) for src, dst in directions])
        forget = self._gate.track(who, host, port, address, relay.cut)
        try:
            relay.start()
            await relay.wait()
        finally:
            forget()

    # -- upstream ---------------------------------------------------------------------------------

    def _via_upstream(self, address: Address) -> bool:
        # Only public addresses go through the operator's proxy; addresses the operator opened with
        # CORRAL_EGRESS_ALLOW_PRIVATE are on its own network and are reached directly.
        return self._upstream is not None and forbidden_reason(address) is None

    async def _connect(
        self, host: str, port: int, verdict: Verdict, *, tunnel: bool
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, Address]:
        failures = []
        for address in verdict.addresses:
            try:
                if self._via_upstream(address):
                    assert self._upstream is not None
                    reader, writer = await asyncio.wait_for(
                        asyncio.open_connection(self._upstream.host, self._upstream.port), CONNECT_TIMEOUT
                    )
                    if tunnel:
                        await self._upstream_connect(reader, writer, address, port)
                else:
                    async with asyncio.timeout(CONNECT_TIMEOUT):
                        reader, writer = await asyncio.open_connection(str(address), port)
                transport_of(writer).pause_reading()  # the answer waits in the kernel for the relay
                return reader, writer, address
            except (OSError, TimeoutError, UpstreamFailed, WireError, asyncio.IncompleteReadError) as exc:
                failures.append(f"{address}: {_why(exc)}")
        raise UpstreamFailed("; ".join(failures))

    async def _upstream_connect(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, address: Address, port: int
    ) -> None:
        """Open a tunnel through the operator's proxy to the address Corral checked (never the name,
        which that proxy would resolve again)."""
        assert self._upstream is not None
        target = authority(str(address), port)
        lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
        if self._upstream.authorization:
            lines.append(f"Proxy-Authorization: {self._upstream.authorization}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        raw = await asyncio.wait_for(read_head(reader), CONNECT_TIMEOUT)
        answer = parse_head(raw or b"", response=True)
        if not answer.first[1].startswith("2"):
            writer.transport.abort()
            raise UpstreamFailed(f"the upstream proxy answered {answer.first[1]} {answer.first[2]}")


def refusal(host: str, port: int, rule: str) -> bytes:
    text = f"Blocked by Corral egress policy: {authority(host, port)}: {rule}"
    return response(403, text, text + "\n", {"X-Corral-Egress": "denied"})


def unreachable(host: str, port: int, why: str) -> bytes:
    text = f"Corral egress proxy could not connect to {authority(host, port)} (allowed by policy): {why}"
    return response(502, "Bad Gateway (upstream unreachable)", text + "\n")


async def _reply(writer: asyncio.StreamWriter, data: bytes) -> None:
    with contextlib.suppress(ConnectionError):
        writer.write(data)
        await writer.drain()


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    while data := await src.read(RELAY_CHUNK):
        dst.write(data)
        await dst.drain()


def _buffered(reader: asyncio.StreamReader) -> bytes:
    """What asyncio already read from a socket we are about to take over (StreamReader keeps it
    in `_buffer`; there is no public way to drain it without waiting)."""
    buffer: bytearray = reader._buffer  # type: ignore[attr-defined]
    data = bytes(buffer)
    buffer.clear()
    return data


async def _first_flight(reader: asyncio.StreamReader) -> bytes:
    """The client's first bytes; a TLS record is read whole (up to 16 KiB) so its ClientHello can be
    checked even when the client sends it in small pieces."""
    data = await reader.read(RELAY_CHUNK)
    if data[:1] != b"\x16":
        return data
    with contextlib.suppress(TimeoutError, asyncio.IncompleteReadError):
        while len(data) < 5 or len(data) < 5 + min(int.from_bytes(data[3:5], "big"), 16 * 1024 + 256):
            more = await asyncio.wait_for(reader.read(RELAY_CHUNK), HELLO_TIMEOUT)
            if not more:
                break
            data += more
    return data


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {CONNECT_TIMEOUT:g} s"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return str(exc) or type(exc).__name__
