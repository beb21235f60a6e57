"""Deleting, moving, making directories, searching and finding, inside the sandbox."""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import ValidationError

from corral.config import WORKDIR
from corral.errors import AgentFailure, InvalidRequest
from corral.service.files.deps import FileDeps
from corral.service.files.models import DirMade, FindResult, PathDeleted, PathMoved, SearchResult
from corral.service.files.paths import check_not_protected, sandbox_path

SKIP_DIRS = (".git", "node_modules", "__pycache__", ".venv")
MAX_RESULTS = 1000
FS_TIMEOUT = 60.0

# Runs as `python3 -c FS_SCRIPT '<json args>'` (Python >= 3.8, stdlib only). Prints one JSON object:
# the result, or {"error": {"type", "message"}}. Output stays well below the exec output cap.
FS_SCRIPT = r'''
import fnmatch, json, os, re, shutil, stat, sys, time

OUT_BUDGET = 400000
SKIP = set(sys.argv[2].split(",")) if len(sys.argv) > 2 and sys.argv[2] else set()
DEADLINE = time.monotonic() + 25.0
LARGE = 16 * 1024 * 1024


class Fail(Exception):
    def __init__(self, kind, message):
        Exception.__init__(self, message)
        self.kind = kind


def clean(text):
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def kind_of(mode):
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISREG(mode):
        return "file"
    return "other"


def lstat_or_none(path):
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def glob_regex(pattern):
    """Glob -> regex over '/'-separated paths: * and ? stay in one segment, ** spans segments,
    [abc] and {x,y} as in shells."""
    return "(?s:" + glob_body(pattern) + r")\Z"


def glob_body(pattern):
    out, i, n = [], 0, len(pattern)
    while i < n:
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            j = pattern.find("]", i + 2 if pattern[i + 1:i + 2] in ("!", "]") else i + 1)
            if j < 0:
                out.append(re.escape(c))
                i += 1
            else:
                body = pattern[i + 1:j]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = j + 1
        elif c == "{":
            j = pattern.find("}", i)
            if j < 0:
                out.append(re.escape(c))
                i += 1
            else:
                alts = pattern[i + 1:j].split(",")
                out.append("(?:" + "|".join(glob_body(a) for a in alts) + ")")
                i = j + 1
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


def matcher(pattern):
    if not pattern:
        return lambda rel, name: True
    try:
        rx = re.compile(glob_regex(pattern.lstrip("/") if "/" in pattern else pattern))
    except re.error as exc:
        raise Fail("bad_request", "invalid glob %r (%s); use *, **, ?, [abc] and {x,y}" % (pattern, exc))
    if "/" in pattern:
        return lambda rel, name: rx.match(rel) is not None
    return lambda rel, name: rx.match(name) is not None


def walk(root):
    """(relative path, name, lstat) for everything under root, sorted, depth-first, pruning SKIP."""
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        try:
            names = sorted(os.listdir(os.path.join(root, rel_dir) if rel_dir else root))
        except OSError:
            continue
        subdirs = []
        for name in names:
            rel = rel_dir + "/" + name if rel_dir else name
            try:
                st = os.lstat(os.path.join(root, rel))
            except OSError:
                continue
            yield rel, name, st
            if stat.S_ISDIR(st.st_mode) and name not in SKIP:
                subdirs.append(rel)
        stack.extend(reversed(subdirs))


def op_delete(a):
    path, recursive = a["path"], a["recursive"]
    st = lstat_or_none(path)
    if st is None:
        raise Fail("not_found", "nothing exists at %s" % path)
    kind = kind_of(st.st_mode)
    if kind != "dir":
        os.unlink(path)
        return {"type": kind}
    if not recursive:
        try:
            os.rmdir(path)
        except OSError as exc:
            if exc.errno in (39, 66):  # ENOTEMPTY
                count = len(os.listdir(path))
                raise Fail("not_empty", "%s is a directory with %d entr%s; pass recursive=true to delete it "
                           "and everything in it" % (path, count, "y" if count == 1 else "ies"))
            raise
        return {"type": kind}
    errors = []
    shutil.rmtree(path, onerror=lambda fn, p, info: errors.append("%s: %s" % (p, info[1])))
    if errors:
        raise Fail("partial", "could not delete everything: " + "; ".join(clean(e) for e in errors[:5]))
    return {"type": kind}


def op_move(a):
    src, dst, overwrite = a["source"], a["destination"], a["overwrite"]
    st = lstat_or_none(src)
    if st is None:
        raise Fail("not_found", "nothing exists at %s" % src)
    kind = kind_of(st.st_mode)
    if kind == "dir" and (dst + "/").startswith(src.rstrip("/") + "/"):
        raise Fail("bad_request", "cannot move %s into itself (%s)" % (src, dst))
    target = lstat_or_none(dst)
    replaced = target is not None
    if target is not None:
        if not overwrite:
            raise Fail("exists", "%s already exists; pass overwrite=true to replace it, or pick another "
                       "destination (the new full path, not a directory to move into)" % dst)
        if stat.S_ISDIR(target.st_mode):
            if kind != "dir":
                raise Fail("is_a_directory", "%s is a directory; a file cannot replace it" % dst)
            if os.listdir(dst):
                raise Fail("not_empty", "%s is a non-empty directory; delete it first or pick another "
                           "destination" % dst)
        elif kind == "dir":
            raise Fail("not_a_directory", "%s is not a directory; a directory cannot replace it" % dst)
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    try:
        os.rename(src, dst)
    except OSError as exc:
        if exc.errno != 18:  # EXDEV: another file system, copy then delete
            raise
        if target is not None:
            if stat.S_ISDIR(target.st_mode):
                os.rmdir(dst)
            else:
                os.unlink(dst)
        shutil.move(src, dst)
    return {"type": kind, "replaced": replaced}


def op_mkdir(a):
    path = a["path"]
    st = lstat_or_none(path)
    if st is not None:
        if stat.S_ISDIR(os.stat(path).st_mode):
            return {"created": False}
        raise Fail("exists", "%s exists and is not a directory" % path)
    os.makedirs(path)
    return {"created": True}


def op_search(a):
    root, limit = a["path"], a["max_results"]
    flags = re.IGNORECASE if a["ignore_case"] else 0
    try:
        rx = re.compile(re.escape(a["pattern"]) if a["literal"] else a["pattern"], flags)
    except re.error as exc:
        raise Fail("bad_request", "invalid regular expression %r: %s. Escape special characters "
                   "or pass literal=true to search for the exact text" % (a["pattern"], exc))
    match_name = matcher(a.get("glob"))
    st = lstat_or_none(root)
    if st is None:
        raise Fail("not_found", "nothing exists at %s" % root)
    if stat.S_ISDIR(st.st_mode):
        candidates = ((os.path.join(root, rel), rel, name, s) for rel, name, s in walk(root))
    else:
        candidates = iter([(root, os.path.basename(root), os.path.basename(root), st)])
    matches, files, binary, large, used, truncated = [], 0, 0, 0, 0, False
    for full, rel, name, s in candidates:
        if not stat.S_ISREG(s.st_mode) or not match_name(rel, name):
            continue
        if time.monotonic() > DEADLINE:
            truncated = True
            break
        if s.st_size > LARGE:
            large += 1
            continue
        try:
            with open(full, "rb") as f:
                data = f.read()
        except OSError:
            continue
        files += 1
        if b"\0" in data[:8192]:
            binary += 1
            continue
        text = data.decode("utf-8", "replace")
        for number, line in enumerate(text.split("\n"), 1):
            if rx.search(line):
                if len(matches) >= limit or used > OUT_BUDGET:
                    truncated = True
                    break
                line = line.rstrip("\r")
                shown = line if len(line) <= 300 else line[:300] + "..."
                matches.append({"path": clean(full), "line": number, "text": clean(shown)})
                used += len(full) + len(shown) + 40
        if truncated:
            break
    return {"matches": matches, "files_searched": files, "truncated": truncated,
            "skipped_binary": binary, "skipped_large": large}


def op_find(a):
    root, limit, want = a["path"], a["max_results"], a["type"]
    match_name = matcher(a["glob"])
    st = lstat_or_none(root)
    if st is None:
        raise Fail("not_found", "nothing exists at %s" % root)
    if not stat.S_ISDIR(st.st_mode):
        raise Fail("not_a_directory", "%s is not a directory" % root)
    entries, used, truncated = [], 0, False
    for rel, name, s in walk(root):
        kind = kind_of(s.st_mode)
        if want != "any" and kind != want:
            continue
        if not match_name(rel, name):
            continue
        if len(entries) >= limit or used > OUT_BUDGET or time.monotonic() > DEADLINE:
            truncated = True
            break
        full = os.path.join(root, rel)
        entries.append({"path": clean(full), "type": kind, "size": s.st_size})
        used += len(full) + 60
    return {"entries": entries, "truncated": truncated}


OPS = {"delete": op_delete, "move": op_move, "mkdir": op_mkdir, "search": op_search, "find": op_find}


def main():
    args = json.loads(sys.argv[1])
    try:
        result = OPS[args["op"]](args)
    except Fail as exc:
        result = {"error": {"type": exc.kind, "message": str(exc)}}
    except OSError as exc:
        kinds = {2: "not_found", 13: "permission", 1: "permission", 20: "not_a_directory",
                 21: "is_a_directory", 17: "exists", 30: "permission", 16: "busy"}
        where = exc.filename if exc.filename is not None else ""
        result = {"error": {"type": kinds.get(exc.errno, "os_error"),
                            "message": clean("%s: %s" % (where, exc.strerror or exc))}}
    except Exception as exc:
        result = {"error": {"type": "internal", "message": clean("%s: %s" % (type(exc).__name__, exc))}}
    sys.stdout.write(json.dumps(result))


main()
'''


async def run_fs(
    deps: FileDeps, ref: str, op: str, args: dict[str, Any], *, timeout: float = FS_TIMEOUT
) -> dict[str, Any]:
    """Run one FS_SCRIPT operation in the sandbox; its own errors become InvalidRequest."""
    argv = ["python3", "-c", FS_SCRIPT, json.dumps({"op": op, **args}), ",".join(SKIP_DIRS)]
    res = await deps.sandboxes.request(
        ref,
        "exec",
        {"argv": argv, "cwd": "/", "timeout": timeout, "max_output": 1024 * 1024, "stream": False},
        timeout=timeout + 15,
    )
    stdout = str(res.get("stdout", ""))
    try:
        reply = json.loads(stdout)
    except ValueError:
        reply = None
    if not isinstance(reply, dict):
        if res.get("exit_code") == 127 or "not found" in str(res.get("stderr", "")):
            raise AgentFailure(f"{op} needs python3 in the sandbox, and it could not be run")
        detail = str(res.get("stderr", "")).strip()[-500:] or stdout[-500:] or "no output"
        raise AgentFailure(f"{op} failed inside the sandbox (exit code {res.get('exit_code')}): {detail}")
    error = reply.get("error")
    if isinstance(error, dict):
        raise InvalidRequest(str(error.get("message", "failed"))[:2000])
    return reply


# -- delete, move, mkdir ------------------------------------------------------------------------------


async def delete_path(deps: FileDeps, ref: str, path: str, *, recursive: bool = False) -> PathDeleted:
    full = sandbox_path(path)
    check_not_protected(full, "delete")
    reply = await run_fs(deps, ref, "delete", {"path": full, "recursive": bool(recursive)})
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
