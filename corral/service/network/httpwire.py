"""Just enough HTTP/1.1 for a forward proxy: request heads, authorities, message bodies by their
framing, and the server name of a TLS ClientHello. Anything malformed is a `WireError` (a 400)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from corral.service.network.policy import normalize_host, parse_address

MAX_HEAD = 64 * 1024
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
}


class WireError(Exception):
    """The peer sent something that is not HTTP this proxy accepts; the message says what."""


@dataclass
class Head:
    """A request (`first` = method, target, version) or response (version, status, reason) head."""

    first: tuple[str, str, str]
    headers: list[tuple[str, str]] = field(default_factory=list)

    def get(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)

    def values(self, name: str) -> list[str]:
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def drop(self, *names: str) -> None:
        lowered = {n.lower() for n in names}
        connection_tokens = {t.strip().lower() for v in self.values("connection") for t in v.split(",")}
        lowered |= connection_tokens
        self.headers = [(k, v) for k, v in self.headers if k.lower() not in lowered]

    def put(self, name: str, value: str) -> None:
        self.drop(name)
        self.headers.append((name, value))

    def encode(self) -> bytes:
        lines = [" ".join(self.first), *(f"{k}: {v}" for k, v in self.headers)]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def read_head(reader: asyncio.StreamReader) -> bytes | None:
    """The bytes of one message head (through the blank line); None at a clean end of stream."""
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None
        raise WireError("the request head ended early") from None
    except asyncio.LimitOverrunError:
        raise WireError(f"the request head is larger than {MAX_HEAD // 1024} KiB") from None


def parse_head(data: bytes, *, response: bool = False) -> Head:
    try:
        text = data.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes everything
        raise WireError("undecodable head") from None
    lines = text.split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < (2 if response else 3):
        raise WireError(f"malformed first line {lines[0][:80]!r}")
    first = (parts[0], parts[1], parts[2] if len(parts) > 2 else "")
    if not response and not first[2].startswith("HTTP/1."):
        raise WireError(f"unsupported protocol {first[2][:20]!r}; this proxy speaks HTTP/1.x")
    head = Head(first)
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip() or any(c in name for c in " \t"):
            raise WireError(f"malformed header line {line[:80]!r}")
        head.headers.append((name, value.strip()))
    return head


def split_authority(authority: str, default_port: int | None) -> tuple[str, int]:
    """(host, port) of 'host:port' / '[v6]:port' (port optional when there is a default); the
    host as a normalised name or an IP literal's canonical text."""
    authority = authority.strip()
    if authority.startswith("["):
        inner, sep, rest = authority[1:].partition("]")
        if not sep:
            raise WireError(f"malformed authority {authority[:80]!r}")
        host, port_text = inner, rest[1:] if rest.startswith(":") else ""
        if rest and not rest.startswith(":"):
            raise WireError(f"malformed authority {authority[:80]!r}")
    else:
        host, _, port_text = authority.rpartition(":") if ":" in authority else (authority, "", "")
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise WireError(f"bad port in {authority[:80]!r}")
        port = int(port_text)
    elif default_port is None:
        raise WireError(f"{authority[:80]!r} has no port")
    else:
        port = default_port
    return canonical_host(host), port


def canonical_host(host: str) -> str:
    address = parse_address(host)
    if address is not None:
        return str(address)
    try:
        return normalize_host(host)
    except (ValueError, UnicodeError):
        raise WireError(f"{host[:80]!r} is not a valid host") from None


def absolute_target(target: str) -> tuple[str, int, str]:
    """(host, port, origin-form path) of an absolute http:// request target."""
    parts = urlsplit(target)
    if parts.scheme.lower() != "http":
        if parts.scheme.lower() == "https":
            raise WireError("send https:// requests through CONNECT (HTTPS_PROXY), not as a plain request")
        raise WireError(f"unsupported request target {target[:80]!r}; use http:// URLs or CONNECT")
    if "@" in parts.netloc:
        raise WireError("credentials in the URL are not sent through the proxy")
    host, port = split_authority(parts.netloc, 80)
    path = parts.path or "/"
    return host, port, path + (f"?{parts.query}" if parts.query else "")


async def copy_body(head: Head, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy exactly the message body `head` announces (Content-Length or chunked) and no more, so
    bytes after it are never taken for part of this request."""
    encodings = ",".join(head.values("transfer-encoding")).lower()
    if encodings:
        if encodings.replace(" ", "").split(",")[-1] != "chunked":
            raise WireError("a request body must be chunked or have a Content-Length")
        await _copy_chunked(reader, writer)
        return
    lengths = {v.strip() for v in head.values("content-length")}
    if not lengths:
        return
    if len(lengths) != 1 or not (length := lengths.pop()).isdigit():
        raise WireError("conflicting or malformed Content-Length")
    remaining = int(length)
    while remaining:
        chunk = await reader.read(min(remaining, 256 * 1024))
        if not chunk:
            raise WireError("the request body ended early")
        writer.write(chunk)
        remaining -= len(chunk)
        await writer.drain()


async def _copy_chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        line = await reader.readuntil(b"\r\n")
        size_text = line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise WireError("malformed chunk size") from None
        writer.write(line)
        if size == 0:
            while True:  # trailers, up to the blank line
                trailer = await reader.readuntil(b"\r\n")
                writer.write(trailer)
                if trailer == b"\r\n":
                    await writer.drain()
                    return
        data = await reader.readexactly(size + 2)
        writer.write(data)
        await writer.drain()


def client_hello_sni(data: bytes) -> str | None:
    """The server name of a TLS ClientHello at the start of `data`, if it has one (and `data` holds
    the whole hello); None otherwise."""
    try:
        if len(data) < 5 or data[0] != 0x16:
            return None
        record_end = 5 + int.from_bytes(data[3:5], "big")
        body = data[5:record_end]
        if not body or body[0] != 0x01:
            return None
        pos = 4 + 2 + 32  # handshake header, version, random
        pos += 1 + body[pos]  # session id
        pos += 2 + int.from_bytes(body[pos : pos + 2], "big")  # cipher suites
        pos += 1 + body[pos]  # compression methods
        end = pos + 2 + int.from_bytes(body[pos : pos + 2], "big")
        pos += 2
        while pos + 4 <= end:
            kind = int.from_bytes(body[pos : pos + 2], "big")
            size = int.from_bytes(body[pos + 2 : pos + 4], "big")
            ext = body[pos + 4 : pos + 4 + size]
            if kind == 0 and len(ext) > 5 and ext[2] == 0:  # server_name, host_name
                name_len = int.from_bytes(ext[3:5], "big")
                return ext[5 : 5 + name_len].decode("ascii").rstrip(".").lower()
            pos += 4 + size
    except (IndexError, UnicodeDecodeError):
        return None
    return None


def response(status: int, reason: str, body: str = "", extra: dict[str, str] | None = None) -> bytes:
    payload = body.encode()
    reason = "".join(c for c in reason if 32 <= ord(c) < 127)[:200]
    lines = [f"HTTP/1.1 {status} {reason}", "Content-Type: text/plain; charset=utf-8",
             f"Content-Length: {len(payload)}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (extra or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", errors="replace") + payload
