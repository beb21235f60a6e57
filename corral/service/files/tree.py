"""Deleting, moving, making directories, searching and finding: agent ops (`fs_delete`, `fs_move`,
`fs_mkdir`, `fs_search`, `fs_find`); which paths may be touched at all is decided here."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import ValidationError

from corral.config import WORKDIR
from corral.errors import AgentFailure, AgentRefused, InvalidRequest
from corral.service.files.deps import FileDeps
from corral.service.files.models import DirMade, FindResult, PathDeleted, PathMoved, SearchResult
from corral.service.files.paths import check_not_protected, sandbox_path

MAX_RESULTS = 1000
FS_TIMEOUT = 60.0

async def run_fs(
    deps: FileDeps, ref: str, op: str, args: dict[str, Any], *, timeout: float = FS_TIMEOUT
) -> dict[str, Any]:
    """Run the agent's `fs_<op>` (delete, move, mkdir, search, find; docs/agent-protocol.md).
    Its errors arrive as Corral errors with the agent's message and kind."""
    return await deps.sandboxes.request(ref, "fs_" + op, args, timeout=timeout)


# -- delete, move, mkdir ------------------------------------------------------------------------------


async def delete_path(
    deps: FileDeps, ref: str, path: str, *, recursive: bool = False, missing_ok: bool = False
) -> PathDeleted:
    full = sandbox_path(path)
    check_not_protected(full, "delete")
    try:
        reply = await run_fs(deps, ref, "delete", {"path": full, "recursive": bool(recursive)})
    except AgentRefused as exc:
        if missing_ok and exc.kind in ("not_found", "not_a_directory"):
            return PathDeleted(path=full, type="none", deleted=False)
        if exc.kind == "not_found":
            raise InvalidRequest(f"{exc} (pass missing_ok=true to treat a missing path as deleted)") from None
        raise
    return PathDeleted(path=full, type=str(reply.get("type", "file")))


async def move_path(
    deps: FileDeps, ref: str, source: str, destination: str, *, overwrite: bool = False
) -> PathMoved:
    src = sandbox_path(source, "source")
    dst = sandbox_path(destination, "destination")
    check_not_protected(src, "move")
    check_not_protected(dst, "replace")
    if src == dst:
        raise InvalidRequest(f"source and destination are the same path ({src})")
    reply = await run_fs(deps, ref, "move", {"source": src, "destination": dst, "overwrite": bool(overwrite)})
    return PathMoved(
        source=src, destination=dst, type=str(reply.get("type", "file")), replaced=bool(reply.get("replaced"))
    )


async def make_dir(deps: FileDeps, ref: str, path: str) -> DirMade:
    full = sandbox_path(path)
    reply = await run_fs(deps, ref, "mkdir", {"path": full})
    return DirMade(path=full, created=bool(reply.get("created")))


# -- search and find --------------------------------------------------------------------------------


def _check_max(max_results: int) -> int:
    if not 1 <= max_results <= MAX_RESULTS:
        raise InvalidRequest(f"max_results must be between 1 and {MAX_RESULTS} (got {max_results})")
    return max_results


def _check_glob(glob: str | None, *, required: bool = False) -> str | None:
    if glob is None or glob == "":
        if required:
            raise InvalidRequest("pattern is empty; give a glob such as '*.py' or 'src/**/*.ts'")
        return None
    if "\x00" in glob or len(glob) > 1024:
        raise InvalidRequest("glob must be at most 1024 characters without NUL bytes")
    return glob


async def search_files(
    deps: FileDeps,
    ref: str,
    pattern: str,
    *,
    path: str = WORKDIR,
    glob: str | None = None,
    literal: bool = False,
    ignore_case: bool = False,
    max_results: int = 100,
) -> SearchResult:
    if not pattern:
        raise InvalidRequest("pattern is empty; give a regular expression or, with literal=true, exact text")
    if len(pattern) > 4096 or "\x00" in pattern:
        raise InvalidRequest("pattern must be at most 4096 characters without NUL bytes")
    if not literal:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise InvalidRequest(
                f"invalid regular expression {pattern!r}: {exc}. Escape special characters "
                "(e.g. \\( \\. \\[) or pass literal=true to search for the exact text"
            ) from None
    args = {
        "path": sandbox_path(path),
        "pattern": pattern,
        "glob": _check_glob(glob),
        "literal": bool(literal),
        "ignore_case": bool(ignore_case),
        "max_results": _check_max(max_results),
    }
    reply = await run_fs(deps, ref, "search", args)
    try:
        result = SearchResult.model_validate(reply)
    except ValidationError as exc:
        raise AgentFailure(f"search_files: malformed reply from the sandbox ({exc.error_count()} errors)") from exc
    result.matches = result.matches[:max_results]
    return result


async def find_files(
    deps: FileDeps,
    ref: str,
    pattern: str,
    *,
    path: str = WORKDIR,
    type: Literal["file", "dir", "any"] = "any",
    max_results: int = 200,
) -> FindResult:
    if type not in ("file", "dir", "any"):
        raise InvalidRequest(f"type must be 'file', 'dir' or 'any' (got {type!r})")
    args = {
        "path": sandbox_path(path),
        "glob": _check_glob(pattern, required=True),
        "type": type,
        "max_results": _check_max(max_results),
    }
    reply = await run_fs(deps, ref, "find", args)
    try:
        result = FindResult.model_validate(reply)
    except ValidationError as exc:
        raise AgentFailure(f"find_files: malformed reply from the sandbox ({exc.error_count()} errors)") from exc
    result.entries = result.entries[:max_results]
    return result
