"""Issue 8, finding 2: the sandbox must not choose where credentials go.

The attack: sandbox code runs `git remote set-url origin http://<other>` and the model then calls
git_push / git_pull with credentials. Credentials may go only to the host a tool call named: the
call's `host`, or else the URL git_clone was given for that repository (kept in Corral's SQLite,
never in the sandbox). A mismatch is an error naming both hosts; the other host gets nothing.
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import urlsplit

import anyio
from mcp import Client

from tests.helpers import call_error, call_ok
from tests.integration.git_server import GitServer
from tests.security.attack_servers import Recorders, recorders

__all__ = ["recorders"]

WAIT = 180


async def call(client: Client, tool: str, **args: Any) -> dict[str, Any]:
    with anyio.fail_after(WAIT):
        return await call_ok(client, tool, **args)


async def fails(client: Client, tool: str, **args: Any) -> str:
    with anyio.fail_after(WAIT):
        return await call_error(client, tool, **args)


async def sh(client: Client, sandbox: str, command: str) -> str:
    out = await call(client, "run_command", sandbox=sandbox, command=command)
    assert out["exit_code"] == 0, out
    return str(out["stdout"])


def hostport(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}"


async def test_remote_repointed_by_the_sandbox_never_gets_the_credentials(
    client: Client, sandbox: str, git_server: GitServer, recorders: Recorders
) -> None:
    creds = git_server.creds()
    repo = f"/workspace/steal-{secrets.token_hex(3)}"
    await call(client, "git_clone", sandbox=sandbox, url=git_server.url("private.git"), path=repo, credentials=creds)
    other = recorders.start(str(urlsplit(git_server.base).hostname))
    await sh(client, sandbox, f"cd {repo} && git remote set-url origin {other.base}/private.git")
    await call(client, "write_file", sandbox=sandbox, path=f"{repo}/w.txt", content="w\n")
    await call(client, "git_commit", sandbox=sandbox, repo=repo, message="Wanted elsewhere")

    for tool in ("git_push", "git_pull"):
        message = await fails(client, tool, sandbox=sandbox, repo=repo, credentials=creds)
        assert hostport(other.base) in message and hostport(git_server.base) in message, message
    assert [r.headers.get("authorization") for r in other.requests if "authorization" in r.headers] == []
    assert other.requests == []

    # Put back by the sandbox, the same calls work: the server answers normally.
    await sh(client, sandbox, f"cd {repo} && git remote set-url origin {git_server.url('private.git')}")
    assert (await call(client, "git_push", sandbox=sandbox, repo=repo, credentials=creds))["result"] == "pushed"


async def test_credentials_go_only_to_a_host_a_call_named(
    client: Client, sandbox: str, git_server: GitServer, recorders: Recorders
) -> None:
    creds = git_server.creds()
    repo = f"/workspace/named-{secrets.token_hex(3)}"
    branch = f"sec-{secrets.token_hex(3)}"
    # A repository made in the sandbox: no call ever named its remote's host.
    await sh(client, sandbox, f"git init -q -b {branch} {repo} && cd {repo} && echo n > n.txt && git add n.txt && "
                              f"git -c user.name=n -c user.email=n@n commit -qm n && "
                              f"git remote add origin {git_server.url('public.git')}")
    message = await fails(client, "git_push", sandbox=sandbox, repo=repo, credentials=creds)
    assert "host" in message and hostport(git_server.base) in message, message
    pushed = await call(client, "git_push", sandbox=sandbox, repo=repo, credentials=creds, host=git_server.base)
    assert pushed["result"] == "created"
    # The named host is remembered for the repository: later calls need not repeat it...
    await call(client, "write_file", sandbox=sandbox, path=f"{repo}/m.txt", content="m\n")
    await call(client, "git_commit", sandbox=sandbox, repo=repo, message="More")
    assert (await call(client, "git_push", sandbox=sandbox, repo=repo, credentials=creds))["result"] == "pushed"
    # ...and naming another host than the remote's is refused before anything is sent anywhere.
    other = recorders.start(str(urlsplit(git_server.base).hostname))
    message = await fails(client, "git_push", sandbox=sandbox, repo=repo, credentials=creds, host=other.base)
    assert hostport(other.base) in message and hostport(git_server.base) in message
    assert other.requests == []
