"""Who an HTTP client is, without OAuth: the local tenant on an unauthenticated loopback server
(until the first token exists), "default" for CORRAL_TOKEN, the token's name for a Corral token.
In-process over FakeEngine."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.cli._common import open_tenants
from corral.config import Settings
from corral.errors import ConfigurationError
from corral.sandbox_backend.fake import FakeEngine
from corral.server.http import HttpOptions, check_auth_policy
from corral.service import open_services, tenancy
from tests.http_app import call_tool, in_process, initialize


async def tenants_of_sandboxes(settings: Settings) -> list[str]:
    async with open_services(settings, engine=FakeEngine(), serve=False) as services:
        with tenancy.acting_as(tenancy.OPERATOR):
            return [rec.tenant for rec in await services.sandboxes.list_all()]


async def test_an_unauthenticated_loopback_client_is_local_until_a_token_exists(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    engine = FakeEngine()
    async with in_process(settings, engine=engine) as http:
        assert not (await call_tool(http, None, "create_sandbox", {"name": "mine"}))["isError"]
        async with open_tenants(settings) as tenants:
            secret = (await tenants.create("team")).secret
        refused = await initialize(http)  # from now on every request needs a token
        assert refused.status_code == 401 and "Bearer" in refused.headers["www-authenticate"]
        listed = await call_tool(http, secret, "list_sandboxes", {})
        assert listed["structuredContent"]["sandboxes"] == []  # the local tenant's box is not the team's
    assert await tenants_of_sandboxes(settings) == ["local"]


async def test_corral_token_is_the_default_tenant_and_a_wrong_token_is_refused(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    async with in_process(settings, HttpOptions(token="s3cret-static"), engine=FakeEngine()) as http:
        assert (await initialize(http)).status_code == 401
        assert (await initialize(http, "wrong")).status_code == 401
        assert not (await call_tool(http, "s3cret-static", "create_sandbox", {}))["isError"]
    assert await tenants_of_sandboxes(settings) == ["default"]


async def test_a_bad_token_is_refused_even_where_anonymous_access_is_allowed(tmp_path: Path) -> None:
    async with in_process(Settings(home=tmp_path), engine=FakeEngine()) as http:
        assert (await initialize(http)).status_code == 200
        assert (await initialize(http, "crl_guessed")).status_code == 401


def test_a_public_bind_needs_some_authentication(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    public = HttpOptions(host="0.0.0.0")
    with pytest.raises(ConfigurationError, match="corral token create"):
        check_auth_policy(public, settings, tokens_exist=False)
    check_auth_policy(public, settings, tokens_exist=True)
    check_auth_policy(HttpOptions(host="0.0.0.0", token="t"), settings, tokens_exist=False)
    check_auth_policy(HttpOptions(host="0.0.0.0", insecure_no_auth=True), settings, tokens_exist=False)
