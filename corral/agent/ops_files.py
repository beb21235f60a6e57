"""read_file, write_file, list_files, stat."""

from __future__ import annotations

import base64
import functools
import grp
import os
import pwd
import stat

from .errors import Failure, bad_request, os_failure
from .params import Params
from .rpc import Request, op
from .state import Agent
from .util import file_type, open_regular_file, pread_upto, token, write_all

TYPE_CHECKING = False  # typing is not imported at run time: it costs the daemon ~1 MiB in every sandbox
if TYPE_CHECKING:
    from typing import Any

MAX_READ = 8 * 1024 * 1024  # base64 of this still fits in one frame
DEFAULT_READ = 1024 * 1024


@op("read_file", "path", "offset", "max_bytes", "binary")
def op_read_file(agent: Agent, req: Request, p: Params) -> dict[str, Any]:
    path = p.path("path")
    offset = p.integer("offset", 0, lo=0, hi=1 << 62)
    max_bytes = p.integer("max_bytes", DEFAULT_READ, lo=0, hi=MAX_READ)
    binary = p.boolean("binary", False)
    fd, st = open_regular_file(path)
    try:
        data = pread_upto(fd, max_bytes + 1, offset)
    except OSError as exc:
        raise os_failure(exc, path) from None
    finally:
        os.close(fd)
    truncated = len(data) > max_bytes
    data = data[:max_bytes]
    result: dict[str, Any] = {"size": max(st.st_size, offset + len(data)), "truncated": truncated}
    if binary:
        result["bytes"] = data  # raw, in a binary frame
    else:
        result["data_b64"] = base64.b64encode(data).decode("ascii")
    return result


@op("write_file", "path", "bytes", "data_b64", "mkdirs", "append", "mode")
def op_write_file(agent: Agent, req: Request, p: Params) -> dict[str, Any]:
    path = p.path("path")
    data = p.data("bytes", "data_b64")
    mkdirs = p.boolean("mkdirs", True)
    append = p.boolean("append", False)
    mode = p.integer("mode", None, lo=0, hi=0o7777)
    # As few file system calls as possible: under gVisor each one is a round trip to the gofer.
    try:
        st = lstat_or_none(path)
        target = os.path.abspath(path)
        if st is not None and stat.S_ISLNK(st.st_mode):
            target = os.path.realpath(path)
            st = lstat_or_none(target)
        if st is not None and stat.S_ISDIR(st.st_mode):
            raise Failure("is_a_directory", f"{path} is a directory")
        if st is not None and not stat.S_ISREG(st.st_mode):
            raise bad_request(f"{path} is not a regular file (a device, FIFO or socket); only regular files "
                              "are written")
        if st is None and mkdirs:
            make_dirs(os.path.dirname(target))
        if append:
            return {"size": append_file(target, data, mode)}
        current = stat.S_IMODE(st.st_mode) if st is not None else None
        replace_file(target, data, mode if mode is not None else current, agent.umask)
        return {"size": len(data)}
    except OSError as exc:
        raise os_failure(exc, path) from None


def lstat_or_none(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def make_dirs(path: str) -> None:
    try:
        os.makedirs(path, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise Failure("not_a_directory", f"a parent of the path is not a directory: {path}") from None


def append_file(target: str, data: bytes, mode: int | None) -> int:
    """Append; returns the file's size after."""
    create_mode = mode if mode is not None else 0o666
    fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK, create_mode)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise bad_request(f"{target} is not a regular file")
        write_all(fd, data)
        if mode is not None:
            os.fchmod(fd, mode)
        return os.fstat(fd).st_size
    finally:
        os.close(fd)


def replace_file(target: str, data: bytes, mode: int | None, umask: int) -> None:
    """Write to a temporary sibling and rename it over the target, so readers never see half.
    `mode`: the target's mode to keep (or the one asked for); None for a new file."""
    if mode is None:
        mode = 0o666 & ~umask
    directory, base = os.path.split(target)
    temp = os.path.join(directory, f".{base[:100]}.corral-{token(4)}.tmp")
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
        entry = {"path": rel, "type": kind, "size": st.st_size, "mtime": st.st_mtime, "mode": stat.S_IMODE(st.st_mode)}
        entry["owner"] = user_name(st.st_uid)
        if kind == "symlink":
            try:
                entry["link_target"] = os.readlink(full)
            except OSError:
                pass
        entries.append(entry)
        if kind == "dir" and depth > 1:
            if walk_dir(req, full, rel + "/", depth - 1, max_entries, entries):
                return True
    return False


@op("stat", "path", "sha256", "head")
def op_stat(agent: Agent, req: Request, p: Params) -> dict[str, Any]:
    path = p.path("path")
    want_hash = p.boolean("sha256", False)
    head = p.integer("head", 0, lo=0, hi=65536)
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
            result["target_type"] = file_type(st.st_mode)
        except OSError:
            pass
    result.update(size=st.st_size, mtime=st.st_mtime, mode=stat.S_IMODE(st.st_mode), **owner_of(st))
    if stat.S_ISREG(st.st_mode) and (want_hash or head):
        result.update(read_summary(req, path, want_hash, head))
    return result


def owner_of(st: os.stat_result) -> dict[str, Any]:
    return {"uid": st.st_uid, "gid": st.st_gid, "owner": user_name(st.st_uid), "group": group_name(st.st_gid)}


@functools.lru_cache(maxsize=64)
def user_name(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name[:64]
    except (KeyError, OSError):
        return None


@functools.lru_cache(maxsize=64)
def group_name(gid: int) -> str | None:
    try:
        return grp.getgrgid(gid).gr_name[:64]
    except (KeyError, OSError):
        return None


HASH_LIMIT = 1 << 30  # files bigger than this are not hashed (sha256 is null)


def read_summary(req: Request, path: str, want_hash: bool, head: int) -> dict[str, Any]:
    """The first `head` bytes (raw, as `bytes`) and the sha256 of the whole file, in one pass."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise os_failure(exc, path) from None
    try:
        out: dict[str, Any] = {"bytes": os.pread(fd, head, 0)} if head else {}
        if want_hash:
            out["sha256"] = None
            if os.fstat(fd).st_size <= HASH_LIMIT:
                import hashlib  # OpenSSL: only for the reads that summarise a binary file

                digest = hashlib.sha256()
                buf = bytearray(1 << 20)
                view = memoryview(buf)
                offset = 0
                while True:
                    req.check_cancelled()
                    n = os.preadv(fd, [buf], offset)
                    if not n:
                        break
                    digest.update(view[:n])
                    offset += n
                out["sha256"] = digest.hexdigest()
        return out
    except OSError as exc:
        raise os_failure(exc, path) from None
    finally:
        os.close(fd)
