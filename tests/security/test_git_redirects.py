"""Issue 8, finding 3: a redirect must not take the networked helper past the private-address check.

The attack: git_clone of a server the operator allowed, which answers 302 to a private address the
operator did not allow (a recorder on the gateway of a second test network). The helper must not
follow it; the recorder proves whether it did.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
from mcp import Client

from corral.config import NetworkSettings, Settings
from corral.server import build_server
from tests.helpers import call_error, call_ok
from tests.integration.cleanup import reap_containers
from tests.integration.git_server import GitServer
from tests.security.attack_servers import Recorders, recorders, second_gateway

__all__ = ["recorders", "second_gateway"]

WAIT = 180


async def call(client: Client, tool: str, **args: Any) -> dict[str, Any]:
    with anyio.fail_after(WAIT):
        return await call_ok(client, tool, **args)


async def test_redirect_to_a_private_address_is_not_followed(
    git_server: GitServer, recorders: Recorders, second_gateway: str, tmp_path: Path, client: Client, sandbox: str
) -> None:
    allowed = str(urlsplit(git_server.base).hostname)
    target = recorders.start(second_gateway)
    redirector = recorders.start(allowed, redirect_to=target.base)
    settings = Settings(home=tmp_path, network=NetworkSettings(allow_private=(allowed,)))
    try:
        async with Client(build_server(settings), raise_exceptions=False) as own:
            box = (await call(own, "create_sandbox"))["id"]
            with anyio.fail_after(WAIT):
                message = await call_error(own, "git_clone", sandbox=box, url=f"{redirector.base}/public.git")
            assert redirector.requests, "the clone never reached the allowed server"
            assert target.requests == [], f"the helper followed the redirect: {target.requests}"
            assert "redirect" in message.lower() and second_gateway not in message, message
            # A direct clone of the disallowed address is refused as before.
            with anyio.fail_after(WAIT):
                refused = await call_error(own, "git_clone", sandbox=box, url=f"{target.base}/public.git")
            assert "CORRAL_EGRESS_ALLOW_PRIVATE" in refused and target.requests == []
            # The server answers the next call normally.
            cloned = await call(own, "git_clone", sandbox=box, url=git_server.url("public.git"), path="ok")
            assert cloned["commits"] > 0
            await call(own, "delete_sandbox", sandbox=box)
    finally:
        reap_containers(tmp_path)
    # Other sandboxes (another server's) are unaffected.
    assert (await call(client, "run_command", sandbox=sandbox, command="echo ok"))["stdout"] == "ok\n"
