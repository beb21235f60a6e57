"""Corral as an OAuth 2.1 resource server (MCP authorization): a test issuer on loopback publishes
its JWKS; valid, expired, wrong-audience, wrong-issuer and forged tokens; the protected-resource
metadata document and the 401 that points to it. The HTTP app runs in-process over FakeEngine."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from corral.config import OAuthSettings, Settings
from corral.sandbox_backend.fake import FakeEngine
from tests.http_app import BASE, INIT, MCP_HEADERS, call_tool, in_process
from tests.issuer import LocalIssuer, running_issuer

PUBLIC = BASE


@pytest.fixture(scope="module")
def issuer() -> Iterator[LocalIssuer]:
    with running_issuer() as running:
        yield running


@asynccontextmanager
async def app_client(tmp_path: Path, issuer: LocalIssuer, **oauth: Any) -> AsyncIterator[httpx2.AsyncClient]:
    settings = Settings(home=tmp_path, public_url=PUBLIC, oauth=OAuthSettings(issuer=issuer.url, **oauth))
    async with in_process(settings, engine=FakeEngine()) as http:
        yield http


async def test_the_protected_resource_metadata_names_the_issuer(tmp_path: Path, issuer: LocalIssuer) -> None:
    async with app_client(tmp_path, issuer, scopes=("sandboxes",)) as http:
        response = await http.get("/.well-known/oauth-protected-resource")
        assert response.status_code == 200
        metadata = response.json()
        assert metadata["resource"] == PUBLIC
        assert metadata["authorization_servers"] == [issuer.url]
        assert metadata["scopes_supported"] == ["sandboxes"]
        assert metadata["bearer_methods_supported"] == ["header"]


async def test_a_request_without_a_token_gets_401_pointing_to_the_metadata(tmp_path: Path, issuer: LocalIssuer) -> None:
    async with app_client(tmp_path, issuer) as http:
        for path in ("/mcp", "/messages/"):
            response = await http.post(path, json=INIT, headers=MCP_HEADERS)
            assert response.status_code == 401
            challenge = response.headers["www-authenticate"]
            assert challenge.startswith("Bearer ")
            assert f'resource_metadata="{PUBLIC}/.well-known/oauth-protected-resource"' in challenge


async def test_a_valid_token_acts_for_the_tenant_named_by_its_claim(tmp_path: Path, issuer: LocalIssuer) -> None:
    async with app_client(tmp_path, issuer) as http:
        alice = issuer.token(PUBLIC, subject="alice")
        created = await call_tool(http, alice, "create_sandbox", {"name": "box"})
        assert not created.get("isError"), created
        bob = issuer.token(f"{PUBLIC}/mcp", subject="bob")  # the endpoint's URL is an accepted audience too
        listed = await call_tool(http, bob, "list_sandboxes", {})
        assert listed["structuredContent"]["sandboxes"] == []
        mine = await call_tool(http, alice, "list_sandboxes", {})
        assert [s["name"] for s in mine["structuredContent"]["sandboxes"]] == ["box"]


async def test_the_tenant_claim_is_configurable(tmp_path: Path, issuer: LocalIssuer) -> None:
    async with app_client(tmp_path, issuer, tenant_claim="org") as http:
        token = issuer.token(PUBLIC, subject="someone", org="acme")
        assert not (await call_tool(http, token, "create_sandbox", {}))["isError"]
        without = issuer.token(PUBLIC, subject="someone")  # no org claim: no tenant, refused
        response = await http.post("/mcp", json=INIT, headers={**MCP_HEADERS, "Authorization": f"Bearer {without}"})
        assert response.status_code == 401


def forged(issuer: LocalIssuer) -> str:
    """HS256 'signed' with the issuer's public key: the classic algorithm-confusion forgery."""
    public = issuer.key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": issuer.kid}).encode())
    claims = b64(json.dumps({"iss": issuer.url, "sub": "mallory", "aud": PUBLIC, "exp": 2**31}).encode())
    signature = hmac.new(public, f"{header}.{claims}".encode(), hashlib.sha256).digest()
    return f"{header}.{claims}.{b64(signature)}"


@pytest.mark.parametrize(
    "bad",
    [
        lambda i: i.token(PUBLIC, lifetime=-120),  # expired (beyond the 30 s leeway)
        lambda i: i.token("https://other.example/mcp"),  # another resource's token
        lambda i: i.token(PUBLIC, iss="http://127.0.0.1:1"),  # another issuer
        forged,
        lambda i: jwt.encode({"iss": i.url, "sub": "x", "aud": PUBLIC, "exp": 2**31}, "", algorithm="none"),
        lambda i: i.token(PUBLIC)[:-4] + "AAAA",  # signature tampered with
        lambda i: "not-a-token",
        lambda i: i.token(PUBLIC, subject="x" * 500),  # a tenant name no table should hold
    ],
    ids=["expired", "wrong-audience", "wrong-issuer", "hs256-forgery", "alg-none", "bad-signature", "garbage",
         "oversized-tenant"],
)
async def test_invalid_tokens_are_refused(tmp_path: Path, issuer: LocalIssuer, bad: Any) -> None:
    async with app_client(tmp_path, issuer) as http:
        response = await http.post("/mcp", json=INIT, headers={**MCP_HEADERS, "Authorization": f"Bearer {bad(issuer)}"})
        assert response.status_code == 401
        assert 'error="invalid_token"' in response.headers["www-authenticate"]


async def test_required_scopes_are_enforced(tmp_path: Path, issuer: LocalIssuer) -> None:
    async with app_client(tmp_path, issuer, scopes=("sandboxes",)) as http:
        without = issuer.token(PUBLIC, scope="openid")
        response = await http.post("/mcp", json=INIT, headers={**MCP_HEADERS, "Authorization": f"Bearer {without}"})
        assert response.status_code == 403 and "insufficient_scope" in response.headers["www-authenticate"]
        with_scope = issuer.token(PUBLIC, scope="openid sandboxes")
        response = await http.post("/mcp", json=INIT, headers={**MCP_HEADERS, "Authorization": f"Bearer {with_scope}"})
        assert response.status_code == 200
