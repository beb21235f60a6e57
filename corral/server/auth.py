"""Who an HTTP request is: bearer tokens turned into a tenant, with the MCP SDK's auth pieces.

Three kinds of bearer token, all checked on every request (so a revoked token fails at once, also
inside an open MCP session):
- a Corral token (`corral token create NAME`): the tenant is NAME, with that token's quotas;
- CORRAL_TOKEN / `--token`: the single tenant "default";
- an OAuth 2.1 access token (a JWT) from the configured issuer, checked against its JWKS for
  signature, expiry, issuer and audience: the tenant is `oauth:` + the configured claim (`sub`).
The result is a `TenantAccessToken` (an SDK `AccessToken` carrying the `Caller`), which the SDK's
`AuthenticationMiddleware` puts on the request and the tool layer reads (`tools/_base.py`).

`TenantGate` then requires an identity on every MCP endpoint, answering 401 with
`WWW-Authenticate` (naming the protected-resource metadata when OAuth is on). Without any
authentication configured, a loopback server lets a request without a token through as the
local tenant — but a request that does present a token is always checked.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import time
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
import anyio.to_thread
import jwt
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser, RequireAuthMiddleware
from mcp.server.auth.provider import AccessToken
from pydantic import ConfigDict
from starlette.authentication import AuthCredentials
from starlette.types import ASGIApp, Receive, Scope, Send

from corral.config import OAuthSettings
from corral.errors import ConfigurationError, CorralError
from corral.service.tenancy import DEFAULT, Caller
from corral.service.tenants import TOKEN_PREFIX, Tenants

log = logging.getLogger(__name__)

# Asymmetric algorithms only: an HS* token "signed" with the issuer's public key must never pass.
JWT_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
JWKS_MAX_AGE = 3600.0  # seconds before the issuer's keys are fetched again
JWKS_MIN_REFETCH = 30.0  # an unknown key id refetches at most this often (no amplification)
LEEWAY = 30  # seconds of clock skew tolerated on exp / nbf / iat
FETCH_TIMEOUT = 10.0
MAX_DOCUMENT = 1024 * 1024
MAX_TENANT_CLAIM = 200  # the tenant's name is stored with every sandbox and audit record


class TenantAccessToken(AccessToken):
    """An SDK access token that also says which tenant (and quotas) it stands for."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    caller: Caller


def access_token(
    who: Caller, token: str, *, scopes: Sequence[str] = (), expires_at: int | None = None, issuer: str | None = None
) -> TenantAccessToken:
    tenant = who.label
    return TenantAccessToken(
        # A fingerprint, not the secret: nothing downstream needs the token itself.
        token=hashlib.sha256(token.encode()).hexdigest()[:16],
        client_id=tenant,
        subject=tenant,
        scopes=list(scopes),
        expires_at=expires_at,
        claims={"iss": issuer} if issuer else None,
        caller=who,
    )


class CorralTokenVerifier:
    """The SDK's `TokenVerifier` for Corral: Corral tokens, CORRAL_TOKEN and OAuth JWTs."""

    def __init__(
        self,
        tenants: Callable[[], Tenants | None],
        *,
        static_token: str | None = None,
        jwt_verifier: JwtVerifier | None = None,
        granted_scopes: Sequence[str] = (),
    ) -> None:
        self._tenants = tenants
        self._static = static_token.encode() if static_token else None
        self._jwt = jwt_verifier
        self._granted = tuple(granted_scopes)  # operator-issued tokens carry every required scope

    async def verify_token(self, token: str) -> AccessToken | None:
        tenants = self._tenants()
        if tenants is None:  # not started (or stopping): nothing can be checked
            return None
        try:
            if self._static is not None and hmac.compare_digest(token.encode(), self._static):
                return access_token(tenants.caller(DEFAULT), token, scopes=self._granted)
            if token.startswith(TOKEN_PREFIX):
                who = await tenants.verify(token)
                return access_token(who, token, scopes=self._granted) if who else None
            if self._jwt is not None:
                return await self._jwt.access_token(token, tenants)
        except CorralError as exc:
            log.warning("could not check a bearer token: %s", exc)
        return None


class JwtVerifier:
    """OAuth 2.1 access tokens as JWTs signed by one issuer, validated against its JWKS."""

    def __init__(self, oauth: OAuthSettings, audiences: Sequence[str]) -> None:
        if not oauth.issuer:
            raise ConfigurationError("OAuth needs an issuer (CORRAL_OAUTH_ISSUER)")
        check_url(oauth.issuer, "CORRAL_OAUTH_ISSUER")
        if oauth.jwks_url:
            check_url(oauth.jwks_url, "CORRAL_OAUTH_JWKS_URL")
        self.issuer = oauth.issuer
        self.audiences = tuple(audiences)
        self.claim = oauth.tenant_claim
        self._jwks_url = oauth.jwks_url
        self._keys: jwt.PyJWKSet | None = None
        self._fetched = 0.0
        self._lock = anyio.Lock()

    async def access_token(self, token: str, tenants: Tenants) -> AccessToken | None:
        claims = await self.claims(token)
        if claims is None:
            return None
        value = claims.get(self.claim)
        name = str(value).strip() if isinstance(value, str | int) and not isinstance(value, bool) else ""
        if not name or len(name) > MAX_TENANT_CLAIM or not name.isprintable():
            log.info("refused a JWT: its %r claim is missing, empty, too long or not printable", self.claim)
            return None
        raw_scopes = claims.get("scope", claims.get("scp", ""))
        scopes = raw_scopes.split() if isinstance(raw_scopes, str) else [str(s) for s in raw_scopes or []]
        exp = claims.get("exp")
        return access_token(
            tenants.oauth_caller(name),
            token,
            scopes=scopes,
            expires_at=int(exp) if isinstance(exp, int | float) else None,
            issuer=self.issuer,
        )

    async def claims(self, token: str) -> dict[str, Any] | None:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return None
        alg = header.get("alg")
        if alg not in JWT_ALGORITHMS:
            log.info("refused a JWT signed with %r (accepted: %s)", alg, ", ".join(JWT_ALGORITHMS))
            return None
        key = await self._key(header.get("kid"))
        if key is None:
            log.info("refused a JWT: the issuer's JWKS has no key %r", header.get("kid"))
            return None
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=list(self.audiences),
                issuer=self.issuer,
                leeway=LEEWAY,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWTError as exc:
            log.info("refused a JWT: %s", exc)
            return None
        return claims

    async def _key(self, kid: Any) -> jwt.PyJWK | None:
        keys = await self._keyset(refresh=False)
        key = _pick(keys, kid)
        if key is None and time.monotonic() - self._fetched > JWKS_MIN_REFETCH:
            key = _pick(await self._keyset(refresh=True), kid)  # the issuer may have rotated its keys
        return key

    async def _keyset(self, *, refresh: bool) -> jwt.PyJWKSet | None:
        async with self._lock:
            stale = time.monotonic() - self._fetched > JWKS_MAX_AGE
            if self._keys is None or stale or refresh:
                if self._keys is not None and not stale and time.monotonic() - self._fetched < JWKS_MIN_REFETCH:
                    return self._keys
                self._fetched = time.monotonic()
                try:
                    url = self._jwks_url or await self._discover()
                    self._keys = jwt.PyJWKSet.from_dict(await anyio.to_thread.run_sync(fetch_json, url))
                except (CorralError, jwt.PyJWTError) as exc:
                    log.warning("could not load the OAuth issuer's keys: %s", exc)
            return self._keys

    async def _discover(self) -> str:
        """The issuer's jwks_uri from its metadata (RFC 8414, then OpenID Connect discovery)."""
        parsed = urllib.parse.urlsplit(self.issuer)
        path = parsed.path.rstrip("/")
        root = f"{parsed.scheme}://{parsed.netloc}"
        for url in (
            f"{root}/.well-known/oauth-authorization-server{path}",
            f"{root}{path}/.well-known/openid-configuration",
        ):
            try:
                document = await anyio.to_thread.run_sync(fetch_json, url)
            except CorralError:
                continue
            jwks = document.get("jwks_uri") if isinstance(document, dict) else None
            if isinstance(jwks, str):
                self._jwks_url = check_url(jwks, "the issuer's jwks_uri")
                return jwks
        raise ConfigurationError(
            f"the OAuth issuer {self.issuer} publishes no jwks_uri (tried RFC 8414 and OpenID discovery); "
            "set CORRAL_OAUTH_JWKS_URL"
        )


def _pick(keys: jwt.PyJWKSet | None, kid: Any) -> jwt.PyJWK | None:
    if keys is None:
        return None
    if kid is None:
        return keys.keys[0] if len(keys.keys) == 1 else None
    return next((k for k in keys.keys if k.key_id == kid), None)


def _is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address((host or "").strip("[]")).is_loopback
    except ValueError:
        return False


def check_url(url: str, what: str) -> str:
    """https, or http to loopback only (a local test issuer); no credentials, fragments."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("https", "http") or not parsed.hostname:
        raise ConfigurationError(f"{what}={url!r} is not an http(s) URL")
    if parsed.scheme == "http" and not _is_loopback(parsed.hostname):
        raise ConfigurationError(f"{what}={url!r} must use https (plain http only to a loopback address)")
    if parsed.username or parsed.password or parsed.fragment:
        raise ConfigurationError(f"{what}={url!r} must not carry credentials or a fragment")
    return url


def fetch_json(url: str) -> Any:
    """GET a small JSON document (blocking; run in a worker thread)."""
    host = urllib.parse.urlsplit(url).hostname
    # A loopback issuer is reached directly, never through a proxy from the environment.
    handlers = [urllib.request.ProxyHandler({})] if _is_loopback(host) else []
    opener = urllib.request.build_opener(*handlers)
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with opener.open(request, timeout=FETCH_TIMEOUT) as response:
            data = response.read(MAX_DOCUMENT + 1)
    except OSError as exc:
        raise ConfigurationError(f"could not fetch {url}: {exc}") from exc
    if len(data) > MAX_DOCUMENT:
        raise ConfigurationError(f"{url} is larger than {MAX_DOCUMENT} bytes")
    try:
        return json.loads(data)
    except ValueError as exc:
        raise ConfigurationError(f"{url} is not JSON: {exc}") from exc


class TenantGate(RequireAuthMiddleware):
    """Every request to an MCP endpoint needs an identity (see the module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        anonymous: Callable[[], Awaitable[Caller | None]],
        required_scopes: Sequence[str] = (),
        resource_metadata_url: Any = None,
        public_paths: Sequence[str] = (),
    ) -> None:
        super().__init__(app, list(required_scopes), resource_metadata_url)
        self._anonymous = anonymous
        self._public = frozenset(public_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self._public:
            await self.app(scope, receive, send)
            return
        if isinstance(scope.get("user"), AuthenticatedUser):
            await super().__call__(scope, receive, send)  # checks the required scopes
            return
        if any(name == b"authorization" for name, _ in scope.get("headers", [])):
            await self._send_auth_error(
                send,
                status_code=401,
                error="invalid_token",
                description="the bearer token is not valid here (unknown, revoked, expired, or for another "
                "issuer or audience)",
            )
            return
        who = await self._anonymous()
        if who is None:
            await self._send_auth_error(
                send, status_code=401, error="invalid_token", description="send Authorization: Bearer <token>"
            )
            return
        scope["user"] = AuthenticatedUser(access_token(who, "anonymous"))
        scope["auth"] = AuthCredentials([])
        await self.app(scope, receive, send)
