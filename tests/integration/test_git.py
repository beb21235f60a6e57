"""Git tools against a real git server on this machine (tests/integration/git_server.py).

Sandboxes have no network: clone, pull and push go through Corral's short-lived networked helper.
The only traffic is to the test network's gateway address.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import sqlite3
from pathlib import Path
from typing import Any

import anyio
import docker
import pytest
from mcp import Client

from corral.config import LABEL_NAMESPACE, Settings
from tests.helpers import call_error, call_ok, text_of
from tests.integration.cleanup import reap_containers
from tests.integration.git_server import USER, GitServer

WAIT = 180  # seconds: generous bound for one networked git operation under gVisor


def fresh(name: str) -> str:
    return f"/workspace/{name}-{secrets.token_hex(3)}"


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


def helpers_left(settings: Settings) -> list[str]:
    client = docker.from_env()
    try:
        found = client.containers.list(all=True, filters={"label": f"{LABEL_NAMESPACE}.role=git-helper"})
        return [c.name for c in found if c.name.startswith("corral-git-")]
    finally:
        client.close()


# -- through the MCP session ---------------------------------------------------------------------------


async def test_clone_public_repo_reports_progress_and_leaves_no_helper(
    client: Client, sandbox: str, git_server: GitServer, settings: Settings
) -> None:
    events: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        events.append((progress, total, message))

    path = fresh("public")
    with anyio.fail_after(WAIT):
        result = await client.call_tool(
            "git_clone", {"sandbox": sandbox, "url": git_server.url("public.git"), "path": path},
            progress_callback=on_progress,
        )
    assert not result.is_error, text_of(result)
    out = result.structured_content
    assert out is not None
    summary = (out["path"], out["branch"], out["commits"], out["shallow"], out["via"])
    assert summary == (path, "main", 5, False, "helper")
    assert out["head"] == git_server.log("public.git", fmt="%H")[0]
    assert events and events[-1][0] == 100
    assert [p for p, _, _ in events] == sorted({p for p, _, _ in events}), "progress must only grow"
    assert await sh(client, sandbox, f"cat {path}/README.md") == "# public.git\n\nrevision 5\n"
    assert await sh(client, sandbox, f"stat -c %u {path}/README.md {path}/.git/HEAD") == "1000\n1000\n"
    # The sandbox itself still has no network.
    curl = f"curl -sS -m 5 {git_server.url('public.git')}/info/refs"
    probe = await call(client, "run_command", sandbox=sandbox, command=curl)
    assert probe["exit_code"] != 0
    assert helpers_left(settings) == []


async def test_clone_branch_with_depth(client: Client, sandbox: str, git_server: GitServer) -> None:
    path = fresh("shallow")
    out = await call(client, "git_clone", sandbox=sandbox, url=git_server.url("public.git"), path=path,
                     branch="dev", depth=2)
    assert (out["branch"], out["commits"], out["shallow"]) == ("dev", 2, True)
    log = await call(client, "git_log", sandbox=sandbox, repo=path)
    assert [c["subject"] for c in log["commits"]] == ["dev work", "public.git commit 5"]
    assert await sh(client, sandbox, f"cat {path}/dev.txt") == "only on dev\n"


async def test_clone_errors_are_clear(client: Client, sandbox: str, git_server: GitServer) -> None:
    url = git_server.url("public.git")
    message = await fails(client, "git_clone", sandbox=sandbox, url=url, path=fresh("nobranch"), branch="nope")
    assert "branch 'nope' does not exist" in message and "main" in message and "dev" in message
    message = await fails(client, "git_clone", sandbox=sandbox, url=git_server.url("missing.git"), path=fresh("x"))
    assert "no git repository at" in message
    message = await fails(client, "git_clone", sandbox=sandbox, url="git@github.com:owner/repo.git")
    assert "https://" in message and "not supported" in message
    message = await fails(client, "git_clone", sandbox=sandbox, url=url, path="/workspace")
    assert "not an empty directory" in message
    message = await fails(client, "git_clone", sandbox=sandbox, url=url, path=fresh("d"), branch="--upload-pack=x")
    assert "invalid branch name" in message


async def test_private_clone_needs_credentials(client: Client, sandbox: str, git_server: GitServer) -> None:
    url = git_server.url("private.git")
    message = await fails(client, "git_clone", sandbox=sandbox, url=url, path=fresh("private"))
    assert "requires authentication" in message and "credentials" in message
    message = await fails(client, "git_clone", sandbox=sandbox, url=url, path=fresh("private"),
                          credentials=git_server.creds("wrong-password"))
    assert "authentication failed" in message
    path = fresh("private")
    out = await call(client, "git_clone", sandbox=sandbox, url=url, path=path, credentials=git_server.creds())
    assert (out["branch"], out["commits"], out["url"]) == ("main", 3, url)


async def test_local_workflow_status_diff_commit_checkout(client: Client, sandbox: str, git_server: GitServer) -> None:
    repo = fresh("local")
    await call(client, "git_clone", sandbox=sandbox, url=git_server.url("public.git"), path=repo)
    status = await call(client, "git_status", sandbox=sandbox, repo=repo)
    assert (status["branch"], status["upstream"], status["clean"], status["ahead"]) == ("main", "origin/main", True, 0)

    await call(client, "write_file", sandbox=sandbox, path=f"{repo}/README.md", content="# changed\n")
    await call(client, "write_file", sandbox=sandbox, path=f"{repo}/new file.txt", content="new\n")
    status = await call(client, "git_status", sandbox=sandbox, repo=repo)
    changes = {(f["path"], f["change"], f["staged"]) for f in status["files"]}
    assert changes == {("README.md", "modified", False), ("new file.txt", "untracked", False)}

    diff = await call(client, "git_diff", sandbox=sandbox, repo=repo)
    assert "-revision 5" in diff["diff"] and "+# changed" in diff["diff"]
    assert (await call(client, "git_diff", sandbox=sandbox, repo=repo, staged=True))["diff"] == ""
    await sh(client, sandbox, f"cd {repo} && git add README.md")
    assert "+# changed" in (await call(client, "git_diff", sandbox=sandbox, repo=repo, staged=True))["diff"]
    only = await call(client, "git_diff", sandbox=sandbox, repo=repo, paths=["dev.txt"], base="HEAD~1")
    assert only["diff"] == ""

    done = await call(client, "git_commit", sandbox=sandbox, repo=repo, message="Change the readme\n\nBody.",
                      author="Ada Lovelace <ada@example.test>")
    assert "2 files changed" in done["summary"] and done["branch"] == "main"
    log = await call(client, "git_log", sandbox=sandbox, repo=repo, max_count=2)
    first = log["commits"][0]
    assert (first["sha"], first["subject"], first["author"], first["email"]) == (
        done["sha"], "Change the readme", "Ada Lovelace", "ada@example.test")
    status = await call(client, "git_status", sandbox=sandbox, repo=repo)
    assert status["clean"] and status["ahead"] == 1
    assert "nothing to commit" in await fails(client, "git_commit", sandbox=sandbox, repo=repo, message="again")

    made = await call(client, "git_checkout", sandbox=sandbox, repo=repo, branch="feature/x", create=True)
    assert (made["branch"], made["created"], made["head"]) == ("feature/x", True, done["sha"])
    tracked = await call(client, "git_checkout", sandbox=sandbox, repo=repo, branch="dev")
    assert tracked["head"] == git_server.log("public.git", "dev", "%H")[0]
    message = await fails(client, "git_checkout", sandbox=sandbox, repo=repo, branch="nope")
    assert "no branch or commit 'nope'" in message and "feature/x" in message and "create=true" in message
    assert "is not inside a git repository" in await fails(client, "git_status", sandbox=sandbox, repo="/tmp")
    assert "invalid revision" in await fails(client, "git_log", sandbox=sandbox, repo=repo, rev="--output=/tmp/x")


async def test_push_and_pull_round_trip(client: Client, sandbox: str, git_server: GitServer) -> None:
    creds = git_server.creds()
    repo = fresh("roundtrip")
    await call(client, "git_clone", sandbox=sandbox, url=git_server.url("private.git"), path=repo, credentials=creds)

    # A local commit goes to the server.
    await call(client, "write_file", sandbox=sandbox, path=f"{repo}/from-sandbox.txt", content="hello\n")
    done = await call(client, "git_commit", sandbox=sandbox, repo=repo, message="From the sandbox")
    assert "requires authentication" in await fails(client, "git_push", sandbox=sandbox, repo=repo)
    pushed = await call(client, "git_push", sandbox=sandbox, repo=repo, credentials=creds)
    assert (pushed["result"], pushed["head"], pushed["via"]) == ("pushed", done["sha"], "helper")
    assert git_server.log("private.git", fmt="%H %s")[0] == f"{done['sha']} From the sandbox"
    assert (await call(client, "git_status", sandbox=sandbox, repo=repo))["ahead"] == 0
    again = await call(client, "git_push", sandbox=sandbox, repo=repo, credentials=creds)
    assert again["result"] == "up-to-date"

    # A new branch is created on the server and tracked.
    await call(client, "git_checkout", sandbox=sandbox, repo=repo, branch="topic", create=True)
    await call(client, "write_file", sandbox=sandbox, path=f"{repo}/topic.txt", content="topic\n")
    await call(client, "git_commit", sandbox=sandbox, repo=repo, message="Topic work")
    created = await call(client, "git_push", sandbox=sandbox, repo=repo, credentials=creds)
    assert created["result"] == "created" and git_server.log("private.git", "topic")[0] == "Topic work"
    assert (await call(client, "git_status", sandbox=sandbox, repo=repo))["upstream"] == "origin/topic"
    await call(client, "git_checkout", sandbox=sandbox, repo=repo, branch="main")

    # Someone else commits: pull fast-forwards.
    git_server.commit_on_server("private.git", "server.txt", "from server\n", "Server commit")
    pulled = await call(client, "git_pull", sandbox=sandbox, repo=repo, credentials=creds)
    assert (pulled["result"], pulled["before"], pulled["via"]) == ("fast-forward", done["sha"], "helper")
    assert pulled["after"] == git_server.log("private.git", fmt="%H")[0]
    assert await sh(client, sandbox, f"cat {repo}/server.txt") == "from server\n"
    assert (await call(client, "git_pull", sandbox=sandbox, repo=repo, credentials=creds))["result"] == "up-to-date"

    # Diverged: the push is rejected with advice, pull merges, then the push goes through.
    git_server.commit_on_server("private.git", "server2.txt", "again\n", "Second server commit")
    await call(client, "write_file", sandbox=sandbox, path=f"{repo}/mine.txt", content="mine\n")
    await call(client, "git_commit", sandbox=sandbox, repo=repo, message="Local work")
    message = await fails(client, "git_push", sandbox=sandbox, repo=repo, credentials=creds)
    assert "push rejected" in message and "git_pull" in message
    merged = await call(client, "git_pull", sandbox=sandbox, repo=repo, credentials=creds)
    assert merged["result"] == "merged"
    assert (await call(client, "git_push", sandbox=sandbox, repo=repo, credentials=creds))["result"] == "pushed"
    assert git_server.log("private.git", fmt="%s")[:3] == [
        f"Merge branch 'main' of {git_server.url('private.git')}", "Local work", "Second server commit"]

    # Conflicting edits are reported, not raised.
    git_server.commit_on_server("private.git", "README.md", "server version\n", "Server readme")
    await call(client, "write_file", sandbox=sandbox, path=f"{repo}/README.md", content="sandbox version\n")
    await call(client, "git_commit", sandbox=sandbox, repo=repo, message="Sandbox readme")
    conflict = await call(client, "git_pull", sandbox=sandbox, repo=repo, credentials=creds)
    assert (conflict["result"], conflict["conflicts"]) == ("conflict", ["README.md"])
    await sh(client, sandbox, f"cd {repo} && git merge --abort")

    message = await fails(client, "git_pull", sandbox=sandbox, repo=repo, branch="nope", credentials=creds)
    assert "branch 'nope' does not exist" in message


async def test_pull_into_a_shallow_clone(client: Client, sandbox: str, git_server: GitServer) -> None:
    repo = fresh("shallow-pull")
    await call(client, "git_clone", sandbox=sandbox, url=git_server.url("public.git"), path=repo, depth=1)
    git_server.commit_on_server("public.git", "more.txt", "more\n", "Public follow-up")
    pulled = await call(client, "git_pull", sandbox=sandbox, repo=repo)
    assert pulled["result"] == "fast-forward"
    log = await call(client, "git_log", sandbox=sandbox, repo=repo)
    assert [c["subject"] for c in log["commits"]] == ["Public follow-up", "public.git commit 5"]


async def test_credentials_never_leak(
    client: Client, sandbox: str, git_server: GitServer, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    password = git_server.password
    basic = base64.b64encode(f"{USER}:{password}".encode()).decode()
    wrong = f"wrong-{secrets.token_hex(8)}"
    creds = git_server.creds()
    url = git_server.url("private.git")
    outputs: list[str] = []

    async def record(tool: str, **args: Any) -> None:
        with anyio.fail_after(WAIT):
            result = await client.call_tool(tool, args)
        outputs.append(text_of(result))
        outputs.append(json.dumps(result.structured_content))

    repo = fresh("secret")
    await record("git_clone", sandbox=sandbox, url=url, path=repo, credentials=creds)
    # Credentials inside the URL are taken out of it.
    repo2 = fresh("secret-url")
    await record("git_clone", sandbox=sandbox, url=url.replace("http://", f"http://{USER}:{password}@"), path=repo2)
    await record("git_clone", sandbox=sandbox, url=url, path=fresh("bad"), credentials=git_server.creds(wrong))
    await record("git_clone", sandbox=sandbox, url=url.replace("http://", f"http://{USER}:{wrong}@"), path=fresh("b"))
    await call(client, "write_file", sandbox=sandbox, path=f"{repo}/x.txt", content="x\n")
    await record("git_commit", sandbox=sandbox, repo=repo, message="x")
    await record("git_push", sandbox=sandbox, repo=repo, credentials=creds)
    await record("git_push", sandbox=sandbox, repo=repo, credentials=git_server.creds(wrong), force=True)
    await record("git_pull", sandbox=sandbox, repo=repo, credentials=creds)
    await record("git_pull", sandbox=sandbox, repo=repo2, credentials=creds)
    assert any('"result": "pushed"' in o for o in outputs), outputs
    assert sum("authentication failed" in o for o in outputs) == 3, outputs

    secret_values = [password, basic, wrong, base64.b64encode(f"{USER}:{wrong}".encode()).decode()]
    # 1. tool outputs
    for text in outputs:
        assert not [s for s in secret_values if s in text], text
    # 2. the sandbox: git config, remote URLs, and anything else under the repos or home
    for path in (repo, repo2):
        remotes = await sh(client, sandbox, f"cd {path} && git remote -v && git config --list --show-origin")
        assert "pw-" not in remotes and f"{USER}:" not in remotes
        assert (await sh(client, sandbox, f"cd {path} && git remote get-url origin")).strip() == url
    # The secrets reach grep through the environment: the audit records commands, never env values.
    grep = await call(client, "run_command", sandbox=sandbox, env={"P1": password, "P2": basic, "P3": wrong},
                      command='grep -rlaF -e "$P1" -e "$P2" -e "$P3" /workspace /tmp 2>/dev/null')
    assert grep["stdout"] == "", grep
    # 3. SQLite (the database and its write-ahead log) and the audit records in it
    for db_file in settings.home.glob("corral.db*"):
        data = db_file.read_bytes()
        assert not [s for s in secret_values if s.encode() in data], db_file
    with sqlite3.connect(settings.db_path) as db:
        audit = db.execute("SELECT tool, outcome, detail FROM audit WHERE tool LIKE 'git_%'").fetchall()
    assert any(outcome == "error" and "authentication failed" in (detail or "") for _, outcome, detail in audit)
    assert not [row for row in audit if any(s in str(row) for s in secret_values)]
    # 4. server logs
    logged = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert not [s for s in secret_values if s in logged]


async def test_private_destinations_are_refused_unless_allowed(settings: Settings, tmp_path: Path) -> None:
    # A server that allows no private destination: nothing is sent, the URL is refused up front.
    from corral.server import build_server

    strict = Settings(home=tmp_path)
    try:
        async with Client(build_server(strict)) as strict_client:
            box = (await call(strict_client, "create_sandbox"))["id"]
            message = await fails(strict_client, "git_clone", sandbox=box, url="http://127.0.0.1:9/repo.git")
            assert "refusing to reach 127.0.0.1" in message and "CORRAL_EGRESS_ALLOW_PRIVATE" in message
            await call(strict_client, "delete_sandbox", sandbox=box)
    finally:
        reap_containers(tmp_path)

