"""One ASGI app serving Streamable HTTP (/mcp) and SSE (/sse + /messages/) together."""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from corral.config import Settings
from corral.errors import ConfigurationError
from corral.server.app import ServiceHolder, build_server
from corral.service import open_services
from corral.tools import DEFAULT_GROUPS

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class HttpOptions:
    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = None
    insecure_no_auth: bool = False
    transports: tuple[str, ...] = ("http", "sse")
    allowed_hosts: tuple[str, ...] = field(default_factory=tuple)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_auth_policy(opts: HttpOptions) -> None:
    """Refuse to expose sandboxes on the network without a token unless explicitly told to."""
    if not is_loopback(opts.host) and not opts.token and not opts.insecure_no_auth:
        raise ConfigurationError(
            f"refusing to listen on {opts.host} without authentication: set CORRAL_TOKEN (or --token), "
            "or pass --insecure-no-auth if something else protects this port"
        )


def security_settings(opts: HttpOptions) -> TransportSecuritySettings:
    hosts = {*LOOPBACK_NAMES, *opts.allowed_hosts}
    if not is_loopback(opts.host) and opts.host not in ("0.0.0.0", "::"):
        hosts.add(opts.host)
    fmt = [f"[{h}]" if ":" in h else h for h in sorted(hosts)]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[*fmt, *(f"{h}:*" for h in fmt)],
        allowed_origins=[o for h in fmt for o in (f"http://{h}", f"http://{h}:*", f"https://{h}:*")],
    )


class BearerAuth:
    """Pure ASGI bearer-token check on every request (streams included)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers", [])).get(b"authorization", b"")
        if hmac.compare_digest(given, self._expected):
            await self.app(scope, receive, send)
            return
        body = b'{"error":"unauthorized","detail":"send Authorization: Bearer <CORRAL_TOKEN>"}'
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"www-authenticate", b'Bearer realm="corral"'),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def build_http_app(
    settings: Settings, opts: HttpOptions, groups: tuple[str, ...] = DEFAULT_GROUPS
) -> tuple[ASGIApp, MCPServer]:  # type: ignore[type-arg]
    check_auth_policy(opts)
    holder = ServiceHolder()
    server = build_server(settings, groups=groups, holder=holder)
    security = security_settings(opts)
    routes = []
    if "http" in opts.transports:
        routes += server.streamable_http_app(transport_security=security, host=opts.host).routes
    if "sse" in opts.transports:
        routes += server.sse_app(transport_security=security, host=opts.host).routes

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with open_services(settings) as services:
            holder.services = services
            try:
                if "http" in opts.transports:
                    async with server.session_manager.run():
                        yield
                else:
                    yield
            finally:
                holder.services = None

    app: ASGIApp = Starlette(routes=routes, lifespan=lifespan)
    if opts.token:
        app = BearerAuth(app, opts.token)
    return app, server
