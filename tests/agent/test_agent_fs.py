"""fs_delete, fs_move, fs_mkdir, fs_search and fs_find against the agent in serve-stdio mode."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anyio
import pytest

from corral.sandbox_backend.agent_channel import AgentChannel, AgentError

from .helpers import DEADLINE, eventually

pytestmark = pytest.mark.anyio


async def agent_error(agent: AgentChannel, op: str, params: dict[str, Any]) -> AgentError:
    with pytest.raises(AgentError) as excinfo:
        await agent.request(op, params)
    return excinfo.value


@pytest.fixture
def tree(work_dir: Path) -> Path:
    for rel, body in {
        "src/app.py": b"import os\nprint('Hello')\n",
        "src/lib/util.py": b"def hello():\n    return 1\n",
        "src/lib/util.ts": b"export const hello = 1\n",
        "README.md": b"# hello\n",
        "node_modules/dep/index.js": b"hello\n",
        ".git/config": b"hello\n",
        "data.bin": b"hello\x00\x01",
    }.items():
        (work_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        (work_dir / rel).write_bytes(body)
    return work_dir


# -- fs_delete ----------------------------------------------------------------------------------------


async def test_delete_removes_a_file_an_empty_dir_and_only_the_link(agent: AgentChannel, work_dir: Path) -> None:
    (work_dir / "f.txt").write_text("x")
    (work_dir / "empty").mkdir()
    (work_dir / "kept").mkdir()
    (work_dir / "kept" / "inside").write_text("y")
    (work_dir / "link").symlink_to(work_dir / "kept")
    assert await agent.request("fs_delete", {"path": str(work_dir / "f.txt")}) == {"type": "file"}
    assert await agent.request("fs_delete", {"path": str(work_dir / "empty")}) == {"type": "dir"}
    assert await agent.request("fs_delete", {"path": str(work_dir / "link"), "recursive": True}) == {"type": "symlink"}
    assert sorted(os.listdir(work_dir)) == ["kept"]
    assert (work_dir / "kept" / "inside").read_text() == "y"


async def test_delete_needs_recursive_for_a_non_empty_dir(agent: AgentChannel, tree: Path) -> None:
    refused = await agent_error(agent, "fs_delete", {"path": str(tree / "src")})
    assert refused.type == "is_a_directory"
    assert "2 entries" in refused.message and "recursive=true" in refused.message
    assert (tree / "src" / "app.py").exists()
    assert await agent.request("fs_delete", {"path": str(tree / "src"), "recursive": True}) == {"type": "dir"}
    assert not (tree / "src").exists()


async def test_delete_of_nothing_is_not_found(agent: AgentChannel, work_dir: Path) -> None:
    missing = await agent_error(agent, "fs_delete", {"path": str(work_dir / "nope")})
    assert missing.type == "not_found" and missing.message == f"nothing exists at {work_dir / 'nope'}"
    (work_dir / "file").write_text("")
    under_file = await agent_error(agent, "fs_delete", {"path": str(work_dir / "file" / "x")})
    assert under_file.type == "not_found"


# -- fs_move ------------------------------------------------------------------------------------------


async def test_move_renames_and_creates_missing_parents(agent: AgentChannel, tree: Path) -> None:
    moved = await agent.request(
        "fs_move", {"source": str(tree / "README.md"), "destination": str(tree / "docs" / "deep" / "R.md")}
    )
    assert moved == {"type": "file", "replaced": False}
    assert (tree / "docs" / "deep" / "R.md").read_bytes() == b"# hello\n" and not (tree / "README.md").exists()
    directory = await agent.request("fs_move", {"source": str(tree / "src"), "destination": str(tree / "code")})
    assert directory == {"type": "dir", "replaced": False} and (tree / "code" / "lib" / "util.py").exists()


async def test_move_replaces_only_with_overwrite(agent: AgentChannel, tree: Path) -> None:
    params = {"source": str(tree / "README.md"), "destination": str(tree / "src" / "app.py")}
    clash = await agent_error(agent, "fs_move", params)
    assert clash.type == "exists" and "overwrite=true" in clash.message
    assert await agent.request("fs_move", {**params, "overwrite": True}) == {"type": "file", "replaced": True}
    assert (tree / "src" / "app.py").read_bytes() == b"# hello\n"
    (tree / "empty").mkdir()
    onto_empty = {"source": str(tree / "src" / "lib"), "destination": str(tree / "empty"), "overwrite": True}
    assert await agent.request("fs_move", onto_empty) == {"type": "dir", "replaced": True}
    assert (tree / "empty" / "util.py").exists()


async def test_move_refuses_what_cannot_work(agent: AgentChannel, tree: Path) -> None:
    (tree / "empty").mkdir()

    async def move_error(source: str, destination: str) -> AgentError:
        params = {"source": str(tree / source), "destination": str(tree / destination), "overwrite": True}
        return await agent_error(agent, "fs_move", params)

    into_itself = await move_error("src", "src/lib/x")
    assert into_itself.type == "bad_request" and "into itself" in into_itself.message
    assert (await move_error("README.md", "empty")).type == "is_a_directory"
    assert (await move_error("empty", "README.md")).type == "not_a_directory"
    not_empty = await move_error("empty", "src")
    assert not_empty.type == "exists" and "non-empty directory" in not_empty.message
    missing = await move_error("nope", "elsewhere")
    assert missing.type == "not_found" and "nothing exists at" in missing.message
    assert sorted(os.listdir(tree / "src")) == ["app.py", "lib"]


# -- fs_mkdir -----------------------------------------------------------------------------------------


async def test_mkdir_creates_parents_and_accepts_an_existing_dir(agent: AgentChannel, work_dir: Path) -> None:
    path = str(work_dir / "a" / "b" / "c")
    assert await agent.request("fs_mkdir", {"path": path}) == {"created": True}
    assert (work_dir / "a" / "b" / "c").is_dir()
    assert await agent.request("fs_mkdir", {"path": path}) == {"created": False}
    (work_dir / "dir-link").symlink_to(work_dir / "a")
    assert await agent.request("fs_mkdir", {"path": str(work_dir / "dir-link")}) == {"created": False}


async def test_mkdir_over_a_file_fails(agent: AgentChannel, work_dir: Path) -> None:
    (work_dir / "file").write_text("")
    exists = await agent_error(agent, "fs_mkdir", {"path": str(work_dir / "file")})
    assert exists.type == "exists" and "is not a directory" in exists.message
    below = await agent_error(agent, "fs_mkdir", {"path": str(work_dir / "file" / "sub")})
    assert below.type == "not_a_directory"


# -- fs_find --------------------------------------------------------------------------------------------


async def find(agent: AgentChannel, root: Path, glob: str, kind: str = "any", **extra: Any) -> list[str]:
    reply = await agent.request("fs_find", {"path": str(root), "glob": glob, "type": kind, **extra})
    return [Path(entry["path"]).relative_to(root).as_posix() for entry in reply["entries"]]


async def test_find_glob_semantics(agent: AgentChannel, tree: Path) -> None:
    assert await find(agent, tree, "*.py") == ["src/app.py", "src/lib/util.py"]
    assert await find(agent, tree, "src/*.py") == ["src/app.py"]
    assert await find(agent, tree, "/src/*.py") == ["src/app.py"]
    assert await find(agent, tree, "src/**/*.py") == ["src/app.py", "src/lib/util.py"]
    assert await find(agent, tree, "**/util.{py,ts}") == ["src/lib/util.py", "src/lib/util.ts"]
    assert await find(agent, tree, "util.?s") == ["src/lib/util.ts"]
    # .git and node_modules are listed but never descended into.
    assert await find(agent, tree, "[!s]*", "dir") == [".git", "node_modules", "src/lib"]
    assert await find(agent, tree, "lib", "file") == []


async def test_find_reports_types_sizes_and_truncation(agent: AgentChannel, tree: Path) -> None:
    reply = await agent.request("fs_find", {"path": str(tree), "glob": "*", "max_results": 3})
    assert reply["truncated"] is True and len(reply["entries"]) == 3
    first = reply["entries"][0]
    assert first == {"path": str(tree / ".git"), "type": "dir", "size": first["size"]}
    files = await agent.request("fs_find", {"path": str(tree), "glob": "app.py", "type": "file"})
    assert files == {"entries": [{"path": str(tree / "src" / "app.py"), "type": "file", "size": 25}],
                     "truncated": False}


async def test_find_errors(agent: AgentChannel, tree: Path) -> None:
    missing = await agent_error(agent, "fs_find", {"path": str(tree / "nope"), "glob": "*"})
    assert missing.type == "not_found"
    not_dir = await agent_error(agent, "fs_find", {"path": str(tree / "README.md"), "glob": "*"})
    assert not_dir.type == "not_a_directory"
    bad_glob = await agent_error(agent, "fs_find", {"path": str(tree), "glob": "[z-a]"})
    assert bad_glob.type == "bad_request" and "invalid glob" in bad_glob.message
    for params, field in (
        ({"path": str(tree)}, "glob"),
        ({"path": str(tree), "glob": "*", "type": "link"}, "type"),
        ({"path": str(tree), "glob": "*", "max_results": 0}, "max_results"),
        ({"path": str(tree), "glob": "*", "depth": 2}, "depth"),
    ):
        problem = await agent_error(agent, "fs_find", params)
        assert problem.type == "bad_request" and field in problem.message


# -- fs_search --------------------------------------------------------------------------------------------


async def search(agent: AgentChannel, root: Path, pattern: str, **extra: Any) -> dict[str, Any]:
    return await agent.request("fs_search", {"path": str(root), "pattern": pattern, **extra})


async def test_search_semantics(agent: AgentChannel, tree: Path) -> None:
    reply = await search(agent, tree, "hello")
    found = {(Path(m["path"]).relative_to(tree).as_posix(), m["line"]) for m in reply["matches"]}
    assert found == {("README.md", 1), ("src/lib/util.py", 1), ("src/lib/util.ts", 1)}
    assert reply["skipped_binary"] == 1 and reply["skipped_large"] == 0 and reply["truncated"] is False
    assert reply["files_searched"] == 5  # node_modules and .git are skipped
    assert len((await search(agent, tree, "hello", ignore_case=True))["matches"]) == 4
    assert [m["line"] for m in (await search(agent, tree, "hello", glob="*.py"))["matches"]] == [1]
    assert (await search(agent, tree, "print(", literal=True))["matches"][0]["text"] == "print('Hello')"
    one_file = await search(agent, tree / "src" / "app.py", "os")
    assert one_file["matches"] == [{"path": str(tree / "src" / "app.py"), "line": 1, "text": "import os"}]


async def test_search_truncates_and_cuts_long_lines(agent: AgentChannel, work_dir: Path) -> None:
    (work_dir / "long.txt").write_text("x" * 1000 + "\r\n" + "y\n" * 5)
    capped = await search(agent, work_dir, "y", max_results=2)
    assert [m["line"] for m in capped["matches"]] == [2, 3] and capped["truncated"] is True
    [line] = (await search(agent, work_dir, "x"))["matches"]
    assert line["text"] == "x" * 300 + "..."


async def test_search_errors(agent: AgentChannel, tree: Path) -> None:
    bad = await agent_error(agent, "fs_search", {"path": str(tree), "pattern": "print("})
    assert bad.type == "bad_request" and "literal=true" in bad.message
    missing = await agent_error(agent, "fs_search", {"path": str(tree / "nope"), "pattern": "x"})
    assert missing.type == "not_found" and "nothing exists at" in missing.message
    for params, field in (
        ({"path": str(tree)}, "pattern"),
        ({"path": str(tree), "pattern": ""}, "pattern"),
        ({"path": str(tree), "pattern": "x", "literal": "yes"}, "literal"),
        ({"path": str(tree), "pattern": "x\x00y"}, "pattern"),
    ):
        problem = await agent_error(agent, "fs_search", params)
        assert problem.type == "bad_request" and field in problem.message


def scan_children(agent_dir: Path) -> list[int]:
    """Pids of fs-scan children started for this agent dir."""
    needle = f"CORRAL_AGENT_DIR={agent_dir}".encode()
    pids = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().split(b"\0")
            with open(f"/proc/{entry}/environ", "rb") as f:
                environ = f.read().split(b"\0")
        except (OSError, ValueError):
            continue
        if b"fs-scan" in cmdline and needle in environ:
            pids.append(int(entry))
    return pids


async def test_a_runaway_regex_neither_stalls_the_agent_nor_outlives_a_cancel(
    agent: AgentChannel, agent_dir: Path, work_dir: Path
) -> None:
    (work_dir / "evil.txt").write_text("a" * 64 + "!\n")  # (a+)+$ backtracks for ages on this
    outcome: list[BaseException] = []

    async def runaway() -> None:
        try:
            await search(agent, work_dir, "(a+)+$")
        except BaseException as exc:
            outcome.append(exc)
            raise

    async with anyio.create_task_group() as tg:
        tg.start_soon(runaway)
        await eventually(lambda: bool(scan_children(agent_dir)), what="the scan to start")
        with anyio.fail_after(DEADLINE):
            assert (await agent.request("hello"))["protocol"] == 1  # the daemon still answers
        tg.cancel_scope.cancel()  # the channel sends `cancel` for the search
    assert outcome and isinstance(outcome[0], anyio.get_cancelled_exc_class())
    await eventually(lambda: not scan_children(agent_dir), what="the scan to be killed")


async def test_devices_and_fifos_are_never_moved_or_written(agent: AgentChannel, work_dir: Path) -> None:
    """Moving /dev/zero across file systems copied its content for ever (12 GB seen)."""
    os.mkfifo(work_dir / "pipe")
    for source in ("/dev/zero", str(work_dir / "pipe")):
        refused = await agent_error(agent, "fs_move", {"source": source, "destination": str(work_dir / "copy")})
        assert refused.type == "bad_request" and "not a regular file" in refused.message
    refused = await agent_error(agent, "write_file", {"path": str(work_dir / "pipe"), "data_b64": "eA=="})
    assert refused.type == "bad_request" and "not a regular file" in refused.message
    assert not (work_dir / "copy").exists() and (work_dir / "pipe").is_fifo()
