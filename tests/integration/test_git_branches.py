"""git_branches: list, create and delete branches of a repository in the sandbox."""

from __future__ import annotations

from mcp import Client

from tests.helpers import call_error, call_ok

SETUP = (
    "rm -rf br && mkdir br && cd br && git init -q -b main && git config user.email t@example.com && "
    "git config user.name T && echo a > a && git add a && git commit -qm first && git checkout -qb topic && "
    "echo b > b && git add b && git commit -qm 'topic work' && git checkout -q main"
)


async def test_git_branches_lists_creates_and_deletes(client: Client, sandbox: str) -> None:
    assert (await call_ok(client, "run_command", sandbox=sandbox, command=SETUP))["exit_code"] == 0
    listed = await call_ok(client, "git_branches", sandbox=sandbox, repo="br")
    assert listed["current"] == "main" and {b["name"] for b in listed["branches"]} == {"main", "topic"}
    topic = next(b for b in listed["branches"] if b["name"] == "topic")
    assert topic["subject"] == "topic work" and topic["remote"] is False and topic["current"] is False

    made = await call_ok(client, "git_branches", sandbox=sandbox, repo="br", action="create", name="feature/x",
                         start_point="topic")
    created = next(b for b in made["branches"] if b["name"] == "feature/x")
    assert made["branch"] == "feature/x" and created["head"] == topic["head"] and made["current"] == "main"
    assert "already exists" in await call_error(
        client, "git_branches", sandbox=sandbox, repo="br", action="create", name="topic"
    )

    assert "not fully merged" in await call_error(
        client, "git_branches", sandbox=sandbox, repo="br", action="delete", name="topic"
    )
    await call_ok(client, "git_branches", sandbox=sandbox, repo="br", action="delete", name="topic", force=True)
    assert "checked out" in await call_error(
        client, "git_branches", sandbox=sandbox, repo="br", action="delete", name="main"
    )
    assert "no branch 'nope'" in await call_error(
        client, "git_branches", sandbox=sandbox, repo="br", action="delete", name="nope"
    )
    left = await call_ok(client, "git_branches", sandbox=sandbox, repo="br")
    assert {b["name"] for b in left["branches"]} == {"main", "feature/x"}


async def test_git_branches_validates_names_before_git_sees_them(client: Client, sandbox: str) -> None:
    for name in ("--force", "-D", "a..b", "x y"):
        message = await call_error(client, "git_branches", sandbox=sandbox, repo="br", action="create", name=name)
        assert "invalid branch name" in message, name
    assert "needs the branch name" in await call_error(
        client, "git_branches", sandbox=sandbox, repo="br", action="delete"
    )
    assert "invalid revision" in await call_error(
        client, "git_branches", sandbox=sandbox, repo="br", action="create", name="ok", start_point="--all"
    )
