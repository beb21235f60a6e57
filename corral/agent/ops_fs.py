"""fs_delete, fs_move, fs_mkdir (in the daemon) and fs_search, fs_find (in an fs-scan child).

Paths are taken as given (the host sends absolute, normalised ones and keeps its own list of
paths it never touches). Symlinks are never followed: deleting or moving one acts on the link.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys

from .bundle import launch_argv
from .errors import KINDS, Failure, errno_kind, os_failure
from .fsscan import SCAN_BUDGET, clean, lstat_or_none
from .params import Params
from .rpc import Request, op
from .spawn import kill_group, spawn
from .state import Agent
from .util import file_type

TYPE_CHECKING = False  # typing is not imported at run time: it costs the daemon ~1 MiB in every sandbox
if TYPE_CHECKING:
    from typing import Any

MAX_RESULTS = 10000
SCAN_GRACE = 15.0  # beyond SCAN_BUDGET, for one slow file or match, before the scan is killed
MAX_SCAN_REPLY = 8 * 1024 * 1024


def fs_failure(exc: OSError) -> Failure:
    failure = os_failure(exc)
    return Failure(failure.kind, clean(failure.message))


@op("fs_delete", "path", "recursive")
def op_fs_delete(agent: Agent, req: Request, p: Params) -> dict[str, Any]:
    path = p.path("path")
    recursive = p.boolean("recursive", False)
    try:
        return {"type": delete(path, recursive)}
    except OSError as exc:
        raise fs_failure(exc) from None


def delete(path: str, recursive: bool) -> str:
    st = lstat_or_none(path)
    if st is None:
        raise Failure("not_found", f"nothing exists at {path}")
    kind = file_type(st.st_mode)
    if kind != "dir":
        os.unlink(path)
    elif not recursive:
        try:
            os.rmdir(path)
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            count = len(os.listdir(path))
            raise Failure(
                "is_a_directory",
                f"{path} is a directory with {count} entr{'y' if count == 1 else 'ies'}; pass "
                "recursive=true to delete it and everything in it",
            ) from None
    else:
        remove_tree(path)
    return kind


def remove_tree(path: str) -> None:
    """shutil.rmtree (never follows symlinks), collecting every error instead of stopping."""
    import shutil
    errors: list[tuple[str, BaseException]] = []
    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=lambda function, name, exc: errors.append((name, exc)))
    else:
        shutil.rmtree(path, onerror=lambda function, name, info: errors.append((name, info[1])))
    if errors:
        first = errors[0][1]
        details = "; ".join(clean(f"{name}: {getattr(error, 'strerror', None) or error}") for name, error in errors[:5])
        kind = errno_kind(first.errno) if isinstance(first, OSError) else "io_error"
        raise Failure(kind, "could not delete everything: " + details)


@op("fs_move", "source", "destination", "overwrite")
def op_fs_move(agent: Agent, req: Request, p: Params) -> dict[str, Any]:
    source = p.path("source")
    destination = p.path("destination")
    overwrite = p.boolean("overwrite", False)
    try:
        return move(source, destination, overwrite)
    except OSError as exc:
        raise fs_failure(exc) from None


def move(src: str, dst: str, overwrite: bool) -> dict[str, Any]:
    import shutil
    st = lstat_or_none(src)
    if st is None:
        raise Failure("not_found", f"nothing exists at {src}")
    kind = file_type(st.st_mode)
    if kind == "other":
        # A device or FIFO: across file systems a move copies its content, which for /dev/zero
        # never ends.
        raise Failure("bad_request", f"{src} is not a regular file, directory or symlink (a device, FIFO or "
                      "socket); only those can be moved")
    if kind == "dir" and (dst + "/").startswith(src.rstrip("/") + "/"):
        raise Failure("bad_request", f"cannot move {src} into itself ({dst})")
    target = lstat_or_none(dst)
    if target is not None:
        if not overwrite:
            raise Failure("exists", f"{dst} already exists; pass overwrite=true to replace it, or pick another "
                          "destination (the new full path, not a directory to move into)")
        if stat.S_ISDIR(target.st_mode):
            if kind != "dir":
                raise Failure("is_a_directory", f"{dst} is a directory; a file cannot replace it")
            if os.listdir(dst):
                raise Failure("exists", f"{dst} is a non-empty directory; delete it first or pick another "
                              "destination")
        elif kind == "dir":
            raise Failure("not_a_directory", f"{dst} is not a directory; a directory cannot replace it")
    parent = os.path.dirname(dst)
    if parent:
        os.makedirs(parent, exist_ok=True)
    try:
        os.rename(src, dst)
    except OSError as exc:
        if exc.errno != errno.EXDEV:  # another file system: copy, then delete
            raise
        if target is not None:
            if stat.S_ISDIR(target.st_mode):
                os.rmdir(dst)
            else:
                os.unlink(dst)
        shutil.move(src, dst, copy_function=copy_regular)
    return {"type": kind, "replaced": target is not None}


def copy_regular(src: str, dst: str) -> None:
    """shutil.move's copy step, refusing what is not a regular file (a FIFO would block, a device
    never end) instead of copying its content."""
    import shutil
    if not stat.S_ISREG(os.lstat(src).st_mode):
        raise OSError(errno.EINVAL, "not a regular file, directory or symlink; not moved", src)
    shutil.copy2(src, dst, follow_symlinks=False)


@op("fs_mkdir", "path")
def op_fs_mkdir(agent: Agent, req: Request, p: Params) -> dict[str, Any]:
    path = p.path("path")
    try:
        if lstat_or_none(path) is not None:
            if stat.S_ISDIR(os.stat(path).st_mode):  # a symlink to a directory counts
                return {"created": False}
            raise Failure("exists", f"{path} exists and is not a directory")
        os.makedirs(path)
    except OSError as exc:
        raise fs_failure(exc) from None
    return {"created": True}


@op("fs_search", "path", "pattern", "glob", "literal", "ignore_case", "max_results")
def op_fs_search(agent: Agent, req: Request, p: Params) -> dict[str, Any]:
    args = {
        "scan": "search",
        "path": p.path("path"),
        "pattern": p.string("pattern", max_len=4096),
        "glob": p.string("glob", None, max_len=1024),
        "literal": p.boolean("literal", False),
        "ignore_case": p.boolean("ignore_case", False),
        "max_results": p.integer("max_results", 100, lo=1, hi=MAX_RESULTS),
    }
    return run_scan(req, args)


@op("fs_find", "path", "glob", "type", "max_results")
def op_fs_find(agent: Agent, req: Request, p: Params) -> dict[str, Any]:
    args = {
        "scan": "find",
        "path": p.path("path"),
        "glob": p.string("glob", max_len=1024),
        "type": p.choice("type", ("file", "dir", "any"), "any"),
        "max_results": p.integer("max_results", 200, lo=1, hi=MAX_RESULTS),
    }
    return run_scan(req, args)


def run_scan(req: Request, args: dict[str, Any]) -> dict[str, Any]:
    """Run fsscan in a child of its own; kill it on cancel or when it overruns its budget."""
    for name in ("pattern", "glob"):
        if "\0" in (args.get(name) or ""):
            raise Failure("bad_request", f"'{name}' contains a NUL character")
    req.check_cancelled()
    child = spawn(
        launch_argv("fs-scan"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )

    def stop() -> None:
        if child.returncode is None:
            kill_group(child.pid)

    req.on_cancel(stop)
    try:
        out, err = child.communicate(json.dumps(args).encode("utf-8"), timeout=SCAN_BUDGET + SCAN_GRACE)
    except subprocess.TimeoutExpired:
        kill_group(child.pid)
        child.communicate()
        raise Failure("timeout", f"the {args['scan']} took longer than {SCAN_BUDGET + SCAN_GRACE:.0f} s and was "
                      "stopped; a simpler pattern or a narrower path or glob should help") from None
    req.check_cancelled()
    try:
        reply = json.loads(out[:MAX_SCAN_REPLY].decode("utf-8")) if len(out) <= MAX_SCAN_REPLY else None
    except ValueError:
        reply = None
    if not isinstance(reply, dict):
        detail = err.decode("utf-8", "replace").strip()[-2000:] or f"exit status {child.returncode}"
        raise Failure("internal", f"the {args['scan']} failed: {detail}")
    error = reply.get("error")
    if isinstance(error, dict):
        kind = error.get("type")
        raise Failure(kind if kind in KINDS else "internal", str(error.get("message", "")))
    return reply
