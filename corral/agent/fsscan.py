"""fs_search and fs_find: walk a tree matching globs and regular expressions.

These run in a child process (mode `fs-scan`, started by ops_fs), never in the daemon: a regular
expression or glob from the request can take exponential time inside `re`, which holds the GIL,
and would stall every other request. The child reads its validated arguments as one JSON object
on stdin and writes one JSON object to stdout: the result, or {"error": {"type", "message"}}.
It stops walking after SCAN_BUDGET seconds (the result then says `truncated`); the daemon kills
it if a single file takes much longer than that.
"""

from __future__ import annotations

import json
import os
import re
import stat
import sys
import time

from .errors import Failure, os_failure
from .util import file_type, write_all

TYPE_CHECKING = False  # typing is not imported at run time: it costs the daemon ~1 MiB in every sandbox
if TYPE_CHECKING:
    from typing import Any, Callable, Iterator

    Matcher = Callable[[str, str], bool]

SKIP_DIRS = frozenset({".git", "node_modules", "__pycache__", ".venv"})  # listed, never descended into
SCAN_BUDGET = 25.0  # seconds of walking before the result is cut short
OUT_BUDGET = 400000  # roughly the characters of paths and lines a result may carry
LARGE = 16 * 1024 * 1024  # files bigger than this are not searched
BINARY_PROBE = 8192  # a NUL byte in the first this many bytes means binary
MAX_LINE = 300  # matching lines are cut to this many characters



def clean(text: str) -> str:
    """Undecodable file names (surrogate escapes) shown with U+FFFD instead."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def glob_regex(pattern: str) -> str:
    """Glob -> regex over '/'-separated paths: * and ? stay in one segment, ** spans segments,
    [abc] and {x,y} as in shells."""
    return "(?s:" + glob_body(pattern) + r")\Z"


def glob_body(pattern: str) -> str:
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
            j = pattern.find("]", i + 2 if pattern[i + 1 : i + 2] in ("!", "]") else i + 1)
            if j < 0:
                out.append(re.escape(c))
                i += 1
            else:
                body = pattern[i + 1 : j]
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
                alts = pattern[i + 1 : j].split(",")
                out.append("(?:" + "|".join(glob_body(a) for a in alts) + ")")
                i = j + 1
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


def matcher(pattern: str | None) -> Matcher:
    """A test of (path relative to the root, name): a glob with '/' matches the relative path,
    one without matches the name alone; no glob matches everything."""
    if not pattern:
        return lambda rel, name: True
    try:
        rx = re.compile(glob_regex(pattern.lstrip("/") if "/" in pattern else pattern))
    except re.error as exc:
        raise Failure("bad_request", f"invalid glob {pattern!r} ({exc}); use *, **, ?, [abc] and {{x,y}}") from None
    if "/" in pattern:
        return lambda rel, name: rx.match(rel) is not None
    return lambda rel, name: rx.match(name) is not None


def lstat_or_none(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def walk(root: str) -> Iterator[tuple[str, str, os.stat_result]]:
    """(relative path, name, lstat) for everything under root, sorted, depth-first, not
    descending into SKIP_DIRS; unreadable directories are skipped."""
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
            if stat.S_ISDIR(st.st_mode) and name not in SKIP_DIRS:
                subdirs.append(rel)
        stack.extend(reversed(subdirs))


def search(args: dict[str, Any], deadline: float) -> dict[str, Any]:
    root, limit = str(args["path"]), int(args["max_results"])
    flags = re.IGNORECASE if args["ignore_case"] else 0
    pattern = str(args["pattern"])
    try:
        rx = re.compile(re.escape(pattern) if args["literal"] else pattern, flags)
    except re.error as exc:
        raise Failure("bad_request", f"invalid regular expression {pattern!r}: {exc}. Escape special characters "
                      "or pass literal=true to search for the exact text") from None
    match_name = matcher(args.get("glob"))
    st = lstat_or_none(root)
    if st is None:
        raise Failure("not_found", f"nothing exists at {root}")
    if stat.S_ISDIR(st.st_mode):
        candidates: Iterator[tuple[str, str, str, os.stat_result]] = (
            (os.path.join(root, rel), rel, name, s) for rel, name, s in walk(root)
        )
    else:
        base = os.path.basename(root)
        candidates = iter([(root, base, base, st)])
    matches: list[dict[str, Any]] = []
    files = binary = large = used = 0
    truncated = False
    for full, rel, name, s in candidates:
        if not stat.S_ISREG(s.st_mode) or not match_name(rel, name):
            continue
        if time.monotonic() > deadline:
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
        if b"\0" in data[:BINARY_PROBE]:
            binary += 1
            continue
        text = data.decode("utf-8", "replace")
        for number, line in enumerate(text.split("\n"), 1):
            if rx.search(line):
                if len(matches) >= limit or used > OUT_BUDGET:
                    truncated = True
                    break
                line = line.rstrip("\r")
                shown = line if len(line) <= MAX_LINE else line[:MAX_LINE] + "..."
                matches.append({"path": clean(full), "line": number, "text": clean(shown)})
                used += len(full) + len(shown) + 40
        if truncated:
            break
    return {"matches": matches, "files_searched": files, "truncated": truncated,
            "skipped_binary": binary, "skipped_large": large}


def find(args: dict[str, Any], deadline: float) -> dict[str, Any]:
    root, limit, want = str(args["path"]), int(args["max_results"]), args["type"]
    match_name = matcher(args["glob"])
    st = lstat_or_none(root)
    if st is None:
        raise Failure("not_found", f"nothing exists at {root}")
    if not stat.S_ISDIR(st.st_mode):
        raise Failure("not_a_directory", f"{root} is not a directory")
    entries: list[dict[str, Any]] = []
    used = 0
    truncated = False
    for rel, name, s in walk(root):
        kind = file_type(s.st_mode)
        if want != "any" and kind != want:
            continue
        if not match_name(rel, name):
            continue
        if len(entries) >= limit or used > OUT_BUDGET or time.monotonic() > deadline:
            truncated = True
            break
        full = os.path.join(root, rel)
        entries.append({"path": clean(full), "type": kind, "size": s.st_size})
        used += len(full) + 60
    return {"entries": entries, "truncated": truncated}


SCANS = {"search": search, "find": find}


def scan(args: dict[str, Any]) -> dict[str, Any]:
    """One scan as the child runs it: the result or an {"error": ...} object, never an exception."""
    deadline = time.monotonic() + SCAN_BUDGET
    try:
        return SCANS[str(args.get("scan"))](args, deadline)
    except Failure as failure:
        return {"error": {"type": failure.kind, "message": clean(failure.message)}}
    except OSError as exc:
        translated = os_failure(exc)
        return {"error": {"type": translated.kind, "message": clean(translated.message)}}
    except Exception as exc:
        return {"error": {"type": "internal", "message": clean(f"{type(exc).__name__}: {exc}")}}


def fs_scan_main() -> int:
    """Mode `fs-scan`: arguments as JSON on stdin, the outcome as JSON on stdout."""
    try:
        args = json.loads(sys.stdin.buffer.read().decode("utf-8"))
    except ValueError as exc:
        args = {"scan": None, "error": str(exc)}
    if not isinstance(args, dict):
        args = {"scan": None}
    write_all(1, json.dumps(scan(args)).encode("utf-8"))
    return 0
