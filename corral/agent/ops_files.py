"""read_file, write_file, list_files, stat."""

from __future__ import annotations

import base64
import os
import secrets
import stat
from typing import Any

from .errors import Failure, bad_request, os_failure
from .params import Params
from .rpc import Request, op
from .state import Agent
from .util import file_type, write_all

MAX_READ = 8 * 1024 * 1024  # base64 of this still fits in one frame
DEFAULT_READ = 1024 * 1024


@op("read_file", "path", "offset", "max_bytes")
def op_read_file(agent: Agent, req: Request, p: Params) -> dict[str, Any]:
    path = p.path("path")
    offset = p.integer("offset", 0, lo=0, hi=1 << 62)
    max_bytes = p.integer("max_bytes", DEFAULT_READ, lo=0, hi=MAX_READ)
    try:
        # O_NONBLOCK so a FIFO cannot hang the request before we get to reject it.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise os_failure(exc, path) from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise Failure("is_a_directory", f"{path} is a directory")
        if not stat.S_ISREG(st.st_mode):
            raise bad_request(f"{path} is not a regular file")
        data = pread_upto(fd, max_bytes + 1, offset)
    except OSError as exc:
        raise os_failure(exc, path) from None
    finally:
        os.close(fd)
    truncated = len(data) > max_bytes
    data = data[:max_bytes]
    return {
        "data_b64": base64.b64encode(data).decode("ascii"),
        "size": max(st.st_size, offset + len(data)),
        "truncated": truncated,
    }


def pread_upto(fd: int, count: int, offset: int) -> bytes:
    chunks = []
    while count > 0:
        chunk = os.pread(fd, min(count, 1 << 20), offset)
        if not chunk:
            break
        chunks.append(chunk)
        count -= len(chunk)
        offset += len(chunk)
    return b"".join(chunks)


@op("write_file", "path", "data_b64", "mkdirs", "append", "mode")
def op_write_file(agent: Agent, req: Request, p: Params) -> dict[str, Any]:
    path = p.path("path")
    data = p.b64("data_b64")
    mkdirs = p.boolean("mkdirs", True)
    append = p.boolean("append", False)
    mode = p.integer("mode", None, lo=0, hi=0o7777)
    target = os.path.realpath(path) if os.path.islink(path) else os.path.abspath(path)
    parent = os.path.dirname(target)
    try:
        if mkdirs:
            make_dirs(parent)
        if os.path.isdir(target):
            raise Failure("is_a_directory", f"{path} is a directory")
        if os.path.lexists(target) and not stat.S_ISREG(os.lstat(target).st_mode):
            raise bad_request(f"{path} is not a regular file (a device, FIFO or socket); only regular files "
                              "are written")
        if append:
            append_file(target, data, mode)
        else:
            replace_file(target, data, mode, agent.umask)
        return {"size": os.stat(target).st_size}
    except OSError as exc:
        raise os_failure(exc, path) from None


def make_dirs(path: str) -> None:
    try:
        os.makedirs(path, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise Failure("not_a_directory", f"a parent of the path is not a directory: {path}") from None


def append_file(target: str, data: bytes, mode: int | None) -> None:
    create_mode = mode if mode is not None else 0o666
    fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK, create_mode)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise bad_request(f"{target} is not a regular file")
        write_all(fd, data)
        if mode is not None:
            os.fchmod(fd, mode)
    finally:
        os.close(fd)


def replace_file(target: str, data: bytes, mode: int | None, umask: int) -> None:
    """Write to a temporary sibling and rename it over the target, so readers never see half."""
    if mode is None:
        try:
            mode = stat.S_IMODE(os.stat(target).st_mode)
        except OSError:
            mode = 0o666 & ~umask
    directory, base = os.path.split(target)
    temp = os.path.join(directory, f".{base[:100]}.corral-{secrets.token_hex(4)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            write_all(fd, data)
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
        os.replace(temp, target)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise


@op("list_files", "path", "depth", "max_entries")
def op_list_files(agent: Agent, req: Request, p: Params) -> dict[str, Any]:
    path = p.path("path")
    depth = p.integer("depth", 1, lo=1, hi=64)
    max_entries = p.integer("max_entries", 1000, lo=1, hi=100000)
    try:
        st = os.stat(path)
    except OSError as exc:
        raise os_failure(exc, path) from None
    if not stat.S_ISDIR(st.st_mode):
        raise Failure("not_a_directory", f"{path} is not a directory")
    try:
        os.listdir(path)
    except OSError as exc:
        raise os_failure(exc, path) from None
    entries: list[dict[str, Any]] = []
    truncated = walk_dir(req, path, "", depth, max_entries, entries)
    return {"entries": entries, "truncated": truncated}


def walk_dir(
    req: Request, directory: str, prefix: str, depth: int, max_entries: int, entries: list[dict[str, Any]]
) -> bool:
    """Depth-first, sorted listing into `entries`; True when max_entries cut it short."""
    req.check_cancelled()
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return False  # unreadable subdirectory: listed, but without children
    for name in names:
        if len(entries) >= max_entries:
            return True
        full = os.path.join(directory, name)
        rel = prefix + name
        try:
            st = os.lstat(full)
        except OSError:
            continue
        kind = file_type(st.st_mode)
        entries.append({"path": rel, "type": kind, "size": st.st_size, "mtime": st.st_mtime})
        if kind == "dir" and depth > 1:
            if walk_dir(req, full, rel + "/", depth - 1, max_entries, entries):
                return True
    return False


@op("stat", "path")
def op_stat(agent: Agent, req: Request, p: Params) -> dict[str, Any]:
    path = p.path("path")
    try:
        lst = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return {"exists": False, "type": None, "size": None, "mtime": None, "mode": None}
    except OSError as exc:
        raise os_failure(exc, path) from None
    result: dict[str, Any] = {"exists": True, "type": file_type(lst.st_mode)}
    st = lst
    if stat.S_ISLNK(lst.st_mode):
        try:
            result["link_target"] = os.readlink(path)
            st = os.stat(path)
        except OSError:
            pass
    result.update(size=st.st_size, mtime=st.st_mtime, mode=stat.S_IMODE(st.st_mode))
    return result
