"""One ASGI app serving Streamable HTTP (/mcp) and SSE (/sse + /messages/) together.

Requests pass, in order: the SDK's `AuthenticationMiddleware` with Corral's token verifier (who is
this? `server/auth.py`), `TenantGate` (an identity is required), `SessionGuard` (sessions per
client, `server/sessions.py`), then the SDK's transports with DNS-rebinding protection and a body
cap that fits the largest request a tool accepts. Connection-level limits (slowloris, number of
connections) are in the uvicorn protocol (`server/protocol.py`).
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from mcp.server.auth.middleware.bearer_auth import BearerAuthBackend
from mcp.server.auth.routes import build_resource_metadata_url, create_protected_resource_routes
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.types import ASGIApp

from corral.config import MIB, ExecPolicy, Settings
from corral.errors import ConfigurationError
from corral.sandbox_backend.engine import Engine
from corral.server.app import ServiceHolder, build_server
from corral.server.auth import CorralTokenVerifier, JwtVerifier, TenantGate
from corral.server.protocol import ConnectionLimits
from corral.server.sessions import SessionGuard
from corral.service import open_services
from corral.service.tenancy import LOCAL, Caller
from corral.tools import DEFAULT_GROUPS

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
METADATA_PATH = "/.well-known/oauth-protected-resource"


@dataclass(frozen=True)
class HttpOptions:
    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = None
    insecure_no_auth: bool = False
    transports: tuple[str, ...] = ("http", "sse")
    allowed_hosts: tuple[str, ...] = field(default_factory=tuple)
    connections: ConnectionLimits = field(default_factory=ConnectionLimits)
    sessions_per_client: int = 64
    max_sessions: int = 1024
    # The SDK's default is 30 minutes; an abandoned session should not hold memory that long.
    # Clients that keep a GET stream open (Claude Code does) are never idle.
    session_idle_timeout: float = 600.0


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_auth_policy(opts: HttpOptions, settings: Settings, tokens_exist: bool) -> None:
    """Refuse to expose sandboxes on the network without authentication unless explicitly told to."""
    authenticated = bool(opts.token) or settings.oauth.enabled or tokens_exist
    if not is_loopback(opts.host) and not authenticated and not opts.insecure_no_auth:
        raise ConfigurationError(
            f"refusing to listen on {opts.host} without authentication: create tenant tokens (`corral token "
            "create NAME`), set CORRAL_TOKEN (or --token) or CORRAL_OAUTH_ISSUER, or pass --insecure-no-auth if "
            "something else protects this port"
        )
    if settings.oauth.enabled and not settings.public_url and not is_loopback(opts.host):
        raise ConfigurationError(
            "OAuth needs the URL clients reach this server at: set CORRAL_PUBLIC_URL (e.g. https://corral.example.com)"
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


def request_body_cap(policy: ExecPolicy) -> int:
    """The largest HTTP request body: a maximal write_file as base64 (4/3 of the file) plus 1 MiB
    for the JSON around it, so the documented file cap and the body cap always agree."""
    return 4 * math.ceil(policy.max_file_bytes / 3) + MIB


def public_url(settings: Settings, opts: HttpOptions) -> str:
    if settings.public_url:
        return settings.public_url.rstrip("/")
    host = "127.0.0.1" if opts.host in ("0.0.0.0", "::") else opts.host
    return f"http://{f'[{host}]' if ':' in host else host}:{opts.port}"


def auth_settings(settings: Settings, base: str) -> AuthSettings | None:
    """The SDK's resource-server settings when OAuth is on (the verifier checks the audience)."""
    oauth = settings.oauth
    if not oauth.enabled:
        return None
    # Strings, not AnyHttpUrl objects: AuthSettings keeps a path-less URL without a trailing slash
    # (issuer comparison is exact, RFC 8414).
    return AuthSettings.model_validate({
        "issuer_url": oauth.issuer,
        "resource_server_url": base,
        "required_scopes": list(oauth.scopes) or None,
        "validate_token_resource": False,
    })


def build_http_app(
    settings: Settings, opts: HttpOptions, groups: tuple[str, ...] = DEFAULT_GROUPS, *, engine: Engine | None = None
) -> tuple[ASGIApp, MCPServer]:  # type: ignore[type-arg]
    holder = ServiceHolder()
    server = build_server(settings, groups=groups, holder=holder, engine=engine)
    security = security_settings(opts)
    body_cap = request_body_cap(settings.exec)
    routes = []
    if "http" in opts.transports:
        routes += server.streamable_http_app(
            transport_security=security,
            host=opts.host,
            max_request_body_size=body_cap,
            session_idle_timeout=opts.session_idle_timeout,
            max_sessions=None,  # SessionGuard caps sessions per client and in total
        ).routes
    if "sse" in opts.transports:
        routes += server.sse_app(transport_security=security, host=opts.host, max_request_body_size=body_cap).routes

    base = public_url(settings, opts)
    auth = auth_settings(settings, base)
    metadata_url = None
    jwt_verifier = None
    if auth is not None and auth.resource_server_url is not None:
        routes += create_protected_resource_routes(
            resource_url=auth.resource_server_url,
            authorization_servers=[auth.issuer_url],
            scopes_supported=auth.required_scopes,
            resource_name="Corral sandboxes",
        )
        metadata_url = build_resource_metadata_url(auth.resource_server_url)
        audiences = settings.oauth.audience or (base, f"{base}/", f"{base}/mcp", f"{base}/sse")
        jwt_verifier = JwtVerifier(settings.oauth, audiences)
    verifier = CorralTokenVerifier(
        lambda: holder.services.tenants if holder.services is not None else None,
        static_token=opts.token,
        jwt_verifier=jwt_verifier,
        granted_scopes=settings.oauth.scopes,
    )
    may_be_anonymous = (is_loopback(opts.host) or opts.insecure_no_auth) and not opts.token and auth is None

    async def anonymous() -> Caller | None:
        """Without any authentication configured, a loopback client is the local tenant; once a
        token exists (`corral token create`), every request must carry one."""
        services = holder.services
        if not may_be_anonymous or services is None or await services.tenants.any():
            return None
        return services.tenants.caller(LOCAL)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with open_services(settings, engine=engine) as services:
            holder.services = services
            try:
                if "http" in opts.transports:
                    async with server.session_manager.run():
                        yield
                else:
                    yield
            finally:
                holder.services = None

    middleware = [
        Middleware(AuthenticationMiddleware, backend=BearerAuthBackend(verifier)),
        Middleware(
            TenantGate,
            anonymous=anonymous,
            required_scopes=settings.oauth.scopes,
            resource_metadata_url=metadata_url,
            public_paths=[p for r in routes if (p := str(getattr(r, "path", ""))).startswith(METADATA_PATH)],
        ),
        Middleware(
            SessionGuard,
            per_client=opts.sessions_per_client,
            total=opts.max_sessions,
            idle_timeout=opts.session_idle_timeout,
        ),
    ]
    app: ASGIApp = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    return app, server
