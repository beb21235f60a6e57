"""Editing, deleting, moving, searching and finding files in a sandbox, and host <-> sandbox transfers.

Edits are done here on the host (read_file -> change -> write_file, which the agent makes atomic), so
the matching rules are ours. Deleting, moving, making directories, searching and finding are agent ops
(`fs_delete`, `fs_move`, `fs_mkdir`, `fs_search`, `fs_find`); which paths may be touched at all is
decided here.

Paths are sandbox paths: the sandbox is a gVisor container with nothing from the host mounted, so a
path or a symlink in it cannot reach the host. Host paths (upload/download) are resolved on the host
and must stay under a directory the operator allowed (`Settings.host_dirs`).
"""

from __future__ import annotations

import base64
import os
import posixpath
import re
import secrets
from pathlib import Path
from typing import Any, Literal

import anyio.to_thread
from pydantic import BaseModel, Field, ValidationError

from corral.errors import AgentFailure, InvalidRequest, PayloadTooLarge
from corral.service.sandboxes import SandboxService
from corral.service.validation import check_path

# Paths that delete_path/move_path never touch: the root, the home, and the agent's own state.
AGENT_DIR = "/tmp/.corral"
PROTECTED = frozenset({"/", "/workspace", "/tmp", AGENT_DIR})
MAX_RESULTS = 1000
SNIPPET_CONTEXT = 3
FS_TIMEOUT = 60.0

# Transfers between host and sandbox.
CHUNK = 4 * 1024 * 1024  # per agent request; its base64 stays well under the 16 MiB frame limit
MAX_TRANSFER_BYTES = 512 * 1024 * 1024
MAX_TRANSFER_FILES = 5000


# -- results ----------------------------------------------------------------------------------


class FileEdited(BaseModel):
    path: str
    replacements: int = Field(description="How many places were changed.")
    size: int = Field(description="File size in bytes after the edit.")
    first_line: int | None = Field(None, description="Line number where the (first) change starts.")
    snippet: str | None = Field(
        None, description="The changed region with a few lines of context, as 'NUMBER|text' lines."
    )


class PathDeleted(BaseModel):
    path: str
    type: str = Field(description="What was deleted: file, dir, symlink or other.")
    deleted: bool = True


class PathMoved(BaseModel):
    source: str
    destination: str
    type: str
    replaced: bool = Field(False, description="True if an existing destination was overwritten.")


class DirMade(BaseModel):
    path: str
    created: bool = Field(description="False if the directory already existed.")


class SearchMatch(BaseModel):
    path: str
    line: int
    text: str = Field(description="The matching line (long lines are cut).")


class SearchResult(BaseModel):
    matches: list[SearchMatch]
    files_searched: int
    truncated: bool = Field(description="True if max_results (or the time/size budget) cut the search.")
    skipped_binary: int = Field(0, description="Files skipped because they look binary.")
    skipped_large: int = Field(0, description="Files skipped because they are over 16 MiB.")


class FoundEntry(BaseModel):
    path: str
    type: Literal["file", "dir", "symlink", "other"]
    size: int


class FindResult(BaseModel):
    entries: list[FoundEntry]
    truncated: bool = Field(description="True if max_results (or the time budget) cut the listing.")


class Transfer(BaseModel):
    direction: Literal["upload", "download"]
    host_path: str
    sandbox_path: str
    files: int = Field(description="Files copied.")
    bytes: int = Field(description="Bytes copied.")
    skipped: list[str] = Field(
        default_factory=list, description="Entries not copied (symlinks, special files), with the reason."
    )


# -- paths --------------------------------------------------------------------------------------


def sandbox_path(path: str, what: str = "path") -> str:
    """check_path, then normalise (`a/../b`, `//x`, trailing slashes) to one absolute path."""
    if not isinstance(path, str):
        raise InvalidRequest(f"{what} must be a string path")
    full = check_path(path)
    norm = posixpath.normpath(full)
    return "/" + norm.lstrip("/")


def check_not_protected(path: str, verb: str) -> None:
    if path in PROTECTED or path == AGENT_DIR or path.startswith(AGENT_DIR + "/"):
        raise InvalidRequest(
            f"refusing to {verb} {path}: it is the sandbox root, /workspace itself, /tmp or Corral's agent "
            "state. Name a file or directory inside /workspace instead."
        )


# -- in the sandbox -------------------------------------------------------------------------------


async def run_fs(
    service: SandboxService, ref: str, op: str, args: dict[str, Any], *, timeout: float = FS_TIMEOUT
) -> dict[str, Any]:
    """Run the agent's `fs_<op>` (delete, move, mkdir, search, find; docs/agent-protocol.md).
    Its errors arrive as Corral errors with the agent's message (InvalidRequest for those the
    model can act on)."""
    return await service.request(ref, "fs_" + op, args, timeout=timeout)


# -- edit -------------------------------------------------------------------------------------------


def _line_of(data: bytes, index: int) -> int:
    return data.count(b"\n", 0, index) + 1


def _snippet(text: str, first: int, last: int) -> str:
    lines = text.splitlines()
    lo = max(1, first - SNIPPET_CONTEXT)
    hi = min(len(lines), max(first, last) + SNIPPET_CONTEXT)
    width = len(str(hi))
    out = "\n".join(f"{n:>{width}}|{lines[n - 1][:300]}" for n in range(lo, hi + 1))
    return out[:4000]


def apply_snippet_edit(
    data: bytes, old_text: str, new_text: str, *, replace_all: bool, path: str
) -> tuple[bytes, int, int]:
    """Replace `old_text` (exactly once, or every time with replace_all). Returns (new data,
    replacements, first changed line)."""
    if old_text == "":
        raise InvalidRequest(
            "old_text is empty. To insert text, include a neighbouring line in old_text (and in new_text); "
            "to replace lines by number, pass start_line/end_line instead; to replace the whole file, use "
            "write_file"
        )
    if old_text == new_text:
        raise InvalidRequest("new_text is identical to old_text: nothing to change")
    old, new = old_text.encode(), new_text.encode()
    count = data.count(old)
    if count == 0:
        raise InvalidRequest(f"old_text was not found in {path}. {_near_miss_hint(data, old_text)}")
    if count > 1 and not replace_all:
        lines: list[str] = []
        start = 0
        while len(lines) < 10:
            index = data.find(old, start)
            if index < 0:
                break
            lines.append(str(_line_of(data, index)))
            start = index + len(old)
        raise InvalidRequest(
            f"old_text matches {count} times in {path} (at lines {', '.join(lines)}"
            f"{', ...' if count > len(lines) else ''}). Include more surrounding lines to make it unique, "
            "or pass replace_all=true to change every occurrence"
        )
    first = _line_of(data, data.find(old))
    return data.replace(old, new), count, first


def _near_miss_hint(data: bytes, old_text: str) -> str:
    hint = "It must match exactly, including whitespace and indentation; read_file shows the current text."
    text = data.decode("utf-8", "replace")
    squashed = " ".join(old_text.split())
    if squashed and squashed in " ".join(text.split()):
        return "A match exists that differs only in whitespace, indentation or line breaks. " + hint
    if "\r\n" in text and "\n" in old_text and "\r\n" not in old_text:
        return "The file uses Windows (CRLF) line endings. " + hint
    first_line = next((ln.strip() for ln in old_text.splitlines() if ln.strip()), "")
    if first_line and first_line in text:
        found = _line_of(data, data.find(first_line.encode()))
        return f"Its first line does occur (line {found}), but the rest differs. " + hint
    return hint


def apply_line_edit(
    text: str, start_line: int, end_line: int | None, new_text: str, *, path: str
) -> tuple[str, int, int]:
    """Replace lines start_line..end_line (1-based, inclusive). Returns (new text, first line, last line
    of the inserted text)."""
    lines = text.splitlines(keepends=True)
    last = start_line if end_line is None else end_line
    if not lines:
        raise InvalidRequest(f"{path} is empty, so it has no lines to replace; use write_file to fill it")
    if not 1 <= start_line <= len(lines):
        raise InvalidRequest(f"start_line must be between 1 and {len(lines)} ({path} has {len(lines)} lines)")
    if not start_line <= last <= len(lines):
        raise InvalidRequest(
            f"end_line must be between start_line ({start_line}) and {len(lines)} ({path} has {len(lines)} lines)"
        )
    replaced = lines[start_line - 1 : last]
    ending = _line_ending(replaced[-1])
    if new_text and ending and not new_text.endswith(("\n", "\r")):
        new_text += ending
    result = "".join(lines[: start_line - 1]) + new_text + "".join(lines[last:])
    added = len(new_text.splitlines())
    return result, start_line, start_line + max(added, 1) - 1


def _line_ending(line: str) -> str:
    if line.endswith("\r\n"):
        return "\r\n"
    stripped = line.rstrip("\r\n")
    return line[len(stripped) :] if stripped != line else ""


async def edit_file(
    service: SandboxService,
    ref: str,
    path: str,
    new_text: str,
    *,
    old_text: str | None = None,
    replace_all: bool = False,
    start_line: int | None = None,
    end_line: int | None = None,
) -> FileEdited:
    full = sandbox_path(path)
    if old_text is None and start_line is None:
        raise InvalidRequest(
            "say what to replace: old_text (an exact snippet of the file), or start_line/end_line (a line range)"
        )
    if old_text is not None and (start_line is not None or end_line is not None):
        raise InvalidRequest("give either old_text or start_line/end_line, not both")
    if end_line is not None and start_line is None:
        raise InvalidRequest("end_line needs start_line too")
    limit = service.settings.exec.max_file_bytes
    res = await service.request(ref, "read_file", {"path": full, "max_bytes": limit}, timeout=60)
    if res.get("truncated"):
        raise PayloadTooLarge(
            f"{full} is {res.get('size')} bytes; edit_file handles files up to {limit} bytes. "
            "Use run_command (e.g. sed -i) for bigger files"
        )
    data = base64.b64decode(str(res.get("data_b64", "")))
    if old_text is not None:
        updated, count, first = apply_snippet_edit(data, old_text, new_text, replace_all=replace_all, path=full)
        last = first + max(len(new_text.splitlines()), 1) - 1
    else:
        assert start_line is not None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRequest(
                f"{full} is not UTF-8 text, so it has no line numbers; use old_text to replace exact bytes"
            ) from None
        new, first, last = apply_line_edit(text, start_line, end_line, new_text, path=full)
        updated, count = new.encode(), 1
    if len(updated) > limit:
        raise PayloadTooLarge(f"the edited file would be {len(updated)} bytes; the limit is {limit} bytes")
    params = {"path": full, "data_b64": base64.b64encode(updated).decode(), "mkdirs": False}
    written = await service.request(ref, "write_file", params, timeout=60)
    try:
        shown: str | None = _snippet(updated.decode("utf-8"), first, last)
    except UnicodeDecodeError:
        shown = None
    return FileEdited(
        path=full,
        replacements=count,
        size=int(written.get("size", len(updated))),
        first_line=first,
        snippet=shown,
    )


# -- delete, move, mkdir ------------------------------------------------------------------------------


async def delete_path(service: SandboxService, ref: str, path: str, *, recursive: bool = False) -> PathDeleted:
    full = sandbox_path(path)
    check_not_protected(full, "delete")
    reply = await run_fs(service, ref, "delete", {"path": full, "recursive": bool(recursive)})
    return PathDeleted(path=full, type=str(reply.get("type", "file")))


async def move_path(
    service: SandboxService, ref: str, source: str, destination: str, *, overwrite: bool = False
) -> PathMoved:
    src = sandbox_path(source, "source")
    dst = sandbox_path(destination, "destination")
    check_not_protected(src, "move")
    check_not_protected(dst, "replace")
    if src == dst:
        raise InvalidRequest(f"source and destination are the same path ({src})")
    reply = await run_fs(service, ref, "move", {"source": src, "destination": dst, "overwrite": bool(overwrite)})
    return PathMoved(
        source=src, destination=dst, type=str(reply.get("type", "file")), replaced=bool(reply.get("replaced"))
    )


async def make_dir(service: SandboxService, ref: str, path: str) -> DirMade:
    full = sandbox_path(path)
    reply = await run_fs(service, ref, "mkdir", {"path": full})
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
    service: SandboxService,
    ref: str,
    pattern: str,
    *,
    path: str = "/workspace",
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
    reply = await run_fs(service, ref, "search", args)
    try:
        result = SearchResult.model_validate(reply)
    except ValidationError as exc:
        raise AgentFailure(f"search_files: malformed reply from the sandbox ({exc.error_count()} errors)") from exc
    result.matches = result.matches[:max_results]
    return result


async def find_files(
    service: SandboxService,
    ref: str,
    pattern: str,
    *,
    path: str = "/workspace",
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
    reply = await run_fs(service, ref, "find", args)
    try:
        result = FindResult.model_validate(reply)
    except ValidationError as exc:
        raise AgentFailure(f"find_files: malformed reply from the sandbox ({exc.error_count()} errors)") from exc
    result.entries = result.entries[:max_results]
    return result


# -- host <-> sandbox -----------------------------------------------------------------------------------


def _allowed_dirs(service: SandboxService) -> list[Path]:
    dirs = [Path(d).expanduser().resolve() for d in service.settings.host_dirs]
    if not dirs:
        raise InvalidRequest(
            "upload and download are off: the server's operator has not allowed any host directory. "
            "To allow one, start the server with `corral serve --allow-host-dir /some/dir` (repeatable) or "
            "set CORRAL_HOST_DIRS=/dir1:/dir2 in its environment. Until then, use write_file/read_file."
        )
    return dirs


def host_path(service: SandboxService, path: str) -> Path:
    """Resolve a host path (symlinks included) and require it to be inside an allowed directory.
    Relative paths are taken relative to the first allowed directory."""
    dirs = _allowed_dirs(service)
    if not isinstance(path, str) or not path.strip() or "\x00" in path:
        raise InvalidRequest("host_path must be a non-empty path without NUL bytes")
    raw = Path(path).expanduser()
    resolved = (raw if raw.is_absolute() else dirs[0] / raw).resolve()
    if not any(resolved == d or resolved.is_relative_to(d) for d in dirs):
        listing = ", ".join(str(d) for d in dirs)
        raise InvalidRequest(
            f"host path {path!r} (resolved: {resolved}) is outside the host directories the operator allowed "
            f"({listing}). Use a path under one of them; the operator can allow more with --allow-host-dir "
            "or CORRAL_HOST_DIRS."
        )
    return resolved


def _inside(base: Path, rel: str) -> Path | None:
    """base/rel for a relative path from the sandbox (untrusted), or None if it would leave base."""
    parts = rel.split("/")
    if not rel or rel.startswith("/") or "\x00" in rel or any(p in ("", ".", "..") for p in parts):
        return None
    target = base.joinpath(*parts)
    resolved = target.resolve()
    return target if resolved == target or resolved.is_relative_to(base) else None


async def upload(service: SandboxService, ref: str, host: str, path: str, *, overwrite: bool = False) -> Transfer:
    src = host_path(service, host)
    dst = sandbox_path(path)
    if dst == AGENT_DIR or dst.startswith(AGENT_DIR + "/"):
        raise InvalidRequest(f"refusing to write into {AGENT_DIR}: it holds Corral's agent state")
    files, empty_dirs, skipped = await anyio.to_thread.run_sync(_plan_upload, src, dst)
    if not overwrite:
        existing = await service.request(ref, "stat", {"path": dst}, timeout=30)
        if existing.get("exists"):
            raise InvalidRequest(
                f"{dst} already exists in the sandbox; pass overwrite=true to replace it (a directory is "
                "merged: files of the same name are replaced)"
            )
    copied = 0
    for host_file, target, _size, mode in files:
        copied += await _upload_file(service, ref, host_file, target, mode)
    for directory in empty_dirs[:MAX_TRANSFER_FILES]:
        await make_dir(service, ref, directory)
    return Transfer(
        direction="upload",
        host_path=str(src),
        sandbox_path=dst,
        files=len(files),
        bytes=copied,
        skipped=skipped,
    )


def _plan_upload(src: Path, dst: str) -> tuple[list[tuple[Path, str, int, int]], list[str], list[str]]:
    """What an upload copies: (host file, sandbox path, size, mode) per file, empty directories to
    create, and what is skipped. Symlinks are never followed."""
    if not src.exists():
        raise InvalidRequest(f"host path {src} does not exist")
    files: list[tuple[Path, str, int, int]] = []
    empty_dirs: list[str] = []
    skipped: list[str] = []
    if src.is_file():
        st = src.stat()
        files.append((src, dst, st.st_size, st.st_mode & 0o777))
    elif src.is_dir():
        for root, dirnames, filenames in os.walk(src, followlinks=False):
            dirnames.sort()
            if not dirnames and not filenames:
                empty_dirs.append(posixpath.join(dst, Path(root).relative_to(src).as_posix()))
            for name in sorted(filenames) + [d for d in dirnames if Path(root, d).is_symlink()]:
                full = Path(root, name)
                rel = full.relative_to(src).as_posix()
                st = full.lstat()
                if full.is_symlink() or not full.is_file():
                    skipped.append(f"{rel}: {'symlink' if full.is_symlink() else 'not a regular file'}")
                    continue
                files.append((full, posixpath.join(dst, rel), st.st_size, st.st_mode & 0o777))
                if len(files) > MAX_TRANSFER_FILES:
                    raise PayloadTooLarge(f"{src} holds more than {MAX_TRANSFER_FILES} files; upload fewer")
    else:
        raise InvalidRequest(f"host path {src} is not a regular file or directory")
    total = sum(size for _, _, size, _ in files)
    if total > MAX_TRANSFER_BYTES:
        raise PayloadTooLarge(f"{src} is {total} bytes; one upload copies at most {MAX_TRANSFER_BYTES} bytes")
    return files, empty_dirs, skipped


async def _upload_file(service: SandboxService, ref: str, source: Path, target: str, mode: int) -> int:
    fd = os.open(source, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    sent = 0
    with os.fdopen(fd, "rb") as f:
        while True:
            chunk = f.read(CHUNK)
            if sent and not chunk:
                break
            params = {
                "path": target,
                "data_b64": base64.b64encode(chunk).decode(),
                "mkdirs": True,
                "append": sent > 0,
                "mode": mode,
            }
            await service.request(ref, "write_file", params, timeout=120)
            sent += len(chunk)
            if sent > MAX_TRANSFER_BYTES:
                raise PayloadTooLarge(f"{source} grew past {MAX_TRANSFER_BYTES} bytes during the upload")
            if len(chunk) < CHUNK:
                break
    return sent


async def download(service: SandboxService, ref: str, path: str, host: str, *, overwrite: bool = False) -> Transfer:
    src = sandbox_path(path)
    dst = host_path(service, host)
    stat = await service.request(ref, "stat", {"path": src}, timeout=30)
    if not stat.get("exists"):
        raise InvalidRequest(f"nothing exists at {src} in the sandbox")
    kind = stat.get("type")
    if kind == "symlink":
        link = str(stat.get("link_target", "?"))[:500]
        raise InvalidRequest(f"{src} is a symlink to {link}; download the path it points to instead")
    if dst.exists() and not overwrite:
        raise InvalidRequest(
            f"host path {dst} already exists; pass overwrite=true to replace it (a directory is merged: "
            "files of the same name are replaced)"
        )
    skipped: list[str] = []
    if kind == "file":
        if dst.is_dir():
            raise InvalidRequest(f"host path {dst} is a directory; give the file's full destination path")
        size = await _download_file(service, ref, src, dst, int(stat.get("mode") or 0o644))
        return Transfer(direction="download", host_path=str(dst), sandbox_path=src, files=1, bytes=size)
    if kind != "dir":
        raise InvalidRequest(f"{src} is not a regular file or directory")
    if dst.exists() and not dst.is_dir():
        raise InvalidRequest(f"host path {dst} exists and is not a directory")
    listing = await service.request(
        ref, "list_files", {"path": src, "depth": 64, "max_entries": MAX_TRANSFER_FILES + 1}, timeout=120
    )
    entries = listing.get("entries")
    if not isinstance(entries, list):
        raise AgentFailure(f"could not list {src} in the sandbox")
    if listing.get("truncated") or len(entries) > MAX_TRANSFER_FILES:
        raise PayloadTooLarge(f"{src} holds more than {MAX_TRANSFER_FILES} entries; download less at once")
    total = sum(int(e.get("size") or 0) for e in entries if isinstance(e, dict) and e.get("type") == "file")
    if total > MAX_TRANSFER_BYTES:
        raise PayloadTooLarge(f"{src} is {total} bytes; one download copies at most {MAX_TRANSFER_BYTES} bytes")
    dst.mkdir(parents=True, exist_ok=True)
    files = copied = 0
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            continue
        rel, etype = entry["path"], entry.get("type")
        target = _inside(dst, rel)
        if target is None:
            skipped.append(f"{rel[:200]}: unsafe name")
            continue
        if etype == "dir":
            target.mkdir(parents=True, exist_ok=True)
        elif etype == "file":
            copied += await _download_file(service, ref, posixpath.join(src, rel), target, 0o644)
            files += 1
            if copied > MAX_TRANSFER_BYTES:
                raise PayloadTooLarge(f"{src} grew past {MAX_TRANSFER_BYTES} bytes during the download")
        else:
            skipped.append(f"{rel}: {etype}")
    return Transfer(
        direction="download", host_path=str(dst), sandbox_path=src, files=files, bytes=copied, skipped=skipped
    )


async def _download_file(service: SandboxService, ref: str, source: str, target: Path, mode: int) -> int:
    """Copy one sandbox file to `target` on the host through a temporary sibling + rename, so a
    symlink planted at `target` is replaced rather than followed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.parent / f".{target.name[:100]}.corral-{secrets.token_hex(4)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(temp, flags, (mode & 0o755) | 0o600)
    offset = 0
    try:
        with os.fdopen(fd, "wb") as f:
            while True:
                res = await service.request(
                    ref, "read_file", {"path": source, "offset": offset, "max_bytes": CHUNK}, timeout=120
                )
                data = base64.b64decode(str(res.get("data_b64", "")))
                if len(data) > CHUNK:
                    raise AgentFailure("the sandbox sent more data than asked for")
                f.write(data)
                offset += len(data)
                if offset > MAX_TRANSFER_BYTES:
                    raise PayloadTooLarge(f"{source} is larger than {MAX_TRANSFER_BYTES} bytes")
                if not res.get("truncated") or not data:
                    break
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return offset


__all__ = [
    "DirMade",
    "FileEdited",
    "FindResult",
    "PathDeleted",
    "PathMoved",
    "SearchResult",
    "Transfer",
    "delete_path",
    "download",
    "edit_file",
    "find_files",
    "make_dir",
    "move_path",
    "search_files",
    "upload",
]
