"""upload / download between the server's machine and a sandbox.

Host paths are resolved on the host (symlinks included) and must stay under a directory the
operator allowed (`Settings.host_dirs`); everything the sandbox says about its files is untrusted.

Nothing half-copied ever sits at the final path: an upload writes each file to a hidden temporary
sibling and renames it into place when it is complete, and a new directory is assembled under a
hidden name and renamed into place as a whole, so an upload cut short (a crash, a restart) can
simply be run again. A download does the same on the host.
"""

from __future__ import annotations

import os
import posixpath
import secrets
from pathlib import Path

import anyio
import anyio.to_thread

from corral.errors import AgentFailure, CorralError, InvalidRequest, PayloadTooLarge
from corral.service import tenancy
from corral.service.files.deps import FileDeps
from corral.service.files.models import Transfer
from corral.service.files.paths import check_not_agent_state, sandbox_path
from corral.service.files.tree import make_dir

CHUNK = 4 * 1024 * 1024  # per agent request (a binary frame), well under the 16 MiB frame limit
MAX_TRANSFER_BYTES = 512 * 1024 * 1024
MAX_TRANSFER_FILES = 5000


def _allowed_dirs(deps: FileDeps) -> list[Path]:
    who = tenancy.caller()
    if not who.may_use_host_dirs:
        raise InvalidRequest(
            f"upload and download are off for tenant {who.label!r}: the server's host directories are shared by "
            "every tenant. Use write_file/read_file."
        )
    dirs = [Path(d).expanduser().resolve() for d in deps.host_dirs]
    if not dirs:
        raise InvalidRequest(
            "upload and download are off: the server's operator has not allowed any host directory. "
            "To allow one, start the server with `corral serve --allow-host-dir /some/dir` (repeatable) or "
            "set CORRAL_HOST_DIRS=/dir1:/dir2 in its environment. Until then, use write_file/read_file."
        )
    return dirs


def shown(path: Path) -> str:
    """A host path as the model may see it: the user's home directory is not spelled out."""
    home = Path.home()
    return f"~/{path.relative_to(home)}" if path != home and path.is_relative_to(home) else str(path)


def host_path(deps: FileDeps, path: str) -> Path:
    """Resolve a host path (symlinks included) and require it to be inside an allowed directory.
    Relative paths are taken relative to the first allowed directory. Errors name the path as the
    model gave it: where `~` or a symlink leads on the host is none of its business."""
    dirs = _allowed_dirs(deps)
    if not isinstance(path, str) or not path.strip() or "\x00" in path:
        raise InvalidRequest("host_path must be a non-empty path without NUL bytes")
    raw = Path(path).expanduser()
    resolved = (raw if raw.is_absolute() else dirs[0] / raw).resolve()
    if not any(resolved == d or resolved.is_relative_to(d) for d in dirs):
        listing = ", ".join(shown(d) for d in dirs)
        raise InvalidRequest(
            f"host path {path!r} is outside the host directories the operator allowed ({listing}), or leads "
            "outside them through a symlink. Use a path under one of them (relative paths are under the first); "
            "the operator can allow more with --allow-host-dir or CORRAL_HOST_DIRS."
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


async def upload(deps: FileDeps, ref: str, host: str, path: str, *, overwrite: bool = False) -> Transfer:
    try:
        return await _upload(deps, ref, host, path, overwrite=overwrite)
    except OSError as exc:
        raise InvalidRequest(f"cannot read host path {host!r}: {exc.strerror or type(exc).__name__}") from None


async def _upload(deps: FileDeps, ref: str, host: str, path: str, *, overwrite: bool) -> Transfer:
    src = host_path(deps, host)
    dst = sandbox_path(path)
    check_not_agent_state(dst, "write into")
    files, empty_dirs, skipped = await anyio.to_thread.run_sync(_plan_upload, src, dst, host)
    if not overwrite:
        existing = await deps.sandboxes.request(ref, "stat", {"path": dst}, timeout=30)
        if existing.get("exists"):
            raise InvalidRequest(
                f"{dst} already exists in the sandbox; pass overwrite=true to replace it (a directory is "
                "merged: files of the same name are replaced)"
            )
    # A new directory is built under a hidden name next to its destination, then renamed into place.
    staging = _temp_sibling(dst) if src.is_dir() and not overwrite else None
    copied = 0
    try:
        for host_file, target, _size, mode in files:
            if staging is not None:
                target = staging + target[len(dst) :]
            copied += await _upload_file(deps, ref, host_file, target, mode, overwrite=overwrite)
        for directory in empty_dirs[:MAX_TRANSFER_FILES]:
            await make_dir(deps, ref, staging + directory[len(dst) :] if staging else directory)
        if staging is not None:
            if not files and not empty_dirs:
                await make_dir(deps, ref, staging)
            await _rename(deps, ref, staging, dst, overwrite=False)
    except BaseException:
        if staging is not None:
            with anyio.CancelScope(shield=True):
                await _forget(deps, ref, staging)
        raise
    return Transfer(
        direction="upload",
        host_path=shown(src),
        sandbox_path=dst,
        files=len(files),
        bytes=copied,
        skipped=skipped,
    )


def _plan_upload(
    src: Path, dst: str, given: str
) -> tuple[list[tuple[Path, str, int, int]], list[str], list[str]]:
    """What an upload copies: (host file, sandbox path, size, mode) per file, empty directories to
    create, and what is skipped. Symlinks are never followed; messages name the path as `given`."""
    if not src.exists():
        raise InvalidRequest(f"host path {given!r} does not exist")
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
                    raise PayloadTooLarge(f"{given!r} holds more than {MAX_TRANSFER_FILES} files; upload fewer")
    else:
        raise InvalidRequest(f"host path {given!r} is not a regular file or directory")
    total = sum(size for _, _, size, _ in files)
    if total > MAX_TRANSFER_BYTES:
        raise PayloadTooLarge(f"{given!r} is {total} bytes; one upload copies at most {MAX_TRANSFER_BYTES} bytes")
    return files, empty_dirs, skipped


def _temp_sibling(path: str) -> str:
    parent, name = posixpath.split(path)
    return posixpath.join(parent, f".{name[:100]}.corral-upload-{secrets.token_hex(4)}")


async def _rename(deps: FileDeps, ref: str, source: str, destination: str, *, overwrite: bool) -> None:
    params = {"source": source, "destination": destination, "overwrite": overwrite}
    await deps.sandboxes.request(ref, "fs_move", params, timeout=120)


async def _forget(deps: FileDeps, ref: str, path: str) -> None:
    """Best effort: remove what an upload that failed had written under a temporary name."""
    try:
        await deps.sandboxes.request(ref, "fs_delete", {"path": path, "recursive": True}, timeout=60)
    except CorralError:
        pass


async def _upload_file(deps: FileDeps, ref: str, source: Path, target: str, mode: int, *, overwrite: bool) -> int:
    """Copy one host file into the sandbox: chunks (raw bytes in binary frames) into a temporary
    sibling of `target`, renamed over it once complete."""
    fd = os.open(source, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    temp = _temp_sibling(target)
    sent = 0
    try:
        with os.fdopen(fd, "rb") as f:
            while True:
                chunk = f.read(CHUNK)
                if sent and not chunk:
                    break
                params = {"path": temp, "bytes": chunk, "mkdirs": True, "append": sent > 0, "mode": mode}
                await deps.sandboxes.request(ref, "write_file", params, timeout=120)
                sent += len(chunk)
                if sent > MAX_TRANSFER_BYTES:
                    raise PayloadTooLarge(f"{source.name} grew past {MAX_TRANSFER_BYTES} bytes during the upload")
                if len(chunk) < CHUNK:
                    break
        await _rename(deps, ref, temp, target, overwrite=overwrite)
    except BaseException:
        with anyio.CancelScope(shield=True):
            await _forget(deps, ref, temp)
        raise
    return sent


async def download(deps: FileDeps, ref: str, path: str, host: str, *, overwrite: bool = False) -> Transfer:
    try:
        return await _download(deps, ref, path, host, overwrite=overwrite)
    except OSError as exc:
        raise InvalidRequest(f"cannot write host path {host!r}: {exc.strerror or type(exc).__name__}") from None


async def _download(deps: FileDeps, ref: str, path: str, host: str, *, overwrite: bool) -> Transfer:
    src = sandbox_path(path)
    dst = host_path(deps, host)
    stat = await deps.sandboxes.request(ref, "stat", {"path": src}, timeout=30)
    if not stat.get("exists"):
        raise InvalidRequest(f"nothing exists at {src} in the sandbox")
    kind = stat.get("type")
    if kind == "symlink":
        link = str(stat.get("link_target", "?"))[:500]
        raise InvalidRequest(f"{src} is a symlink to {link}; download the path it points to instead")
    if dst.exists() and not overwrite:
        raise InvalidRequest(
            f"host path {host!r} already exists; pass overwrite=true to replace it (a directory is merged: "
            "files of the same name are replaced)"
        )
    skipped: list[str] = []
    if kind == "file":
        if dst.is_dir():
            raise InvalidRequest(f"host path {host!r} is a directory; give the file's full destination path")
        size = await _download_file(deps, ref, src, dst, int(stat.get("mode") or 0o644))
        return Transfer(direction="download", host_path=shown(dst), sandbox_path=src, files=1, bytes=size)
    if kind != "dir":
        raise InvalidRequest(f"{src} is not a regular file or directory")
    if dst.exists() and not dst.is_dir():
        raise InvalidRequest(f"host path {host!r} exists and is not a directory")
    listing = await deps.sandboxes.request(
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
            copied += await _download_file(deps, ref, posixpath.join(src, rel), target, 0o644)
            files += 1
            if copied > MAX_TRANSFER_BYTES:
                raise PayloadTooLarge(f"{src} grew past {MAX_TRANSFER_BYTES} bytes during the download")
        else:
            skipped.append(f"{rel}: {etype}")
    return Transfer(
        direction="download", host_path=shown(dst), sandbox_path=src, files=files, bytes=copied, skipped=skipped
    )


async def _download_file(deps: FileDeps, ref: str, source: str, target: Path, mode: int) -> int:
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
                params = {"path": source, "offset": offset, "max_bytes": CHUNK, "binary": True}
                res = await deps.sandboxes.request(ref, "read_file", params, timeout=120)
                data = bytes(res.get("bytes") or b"")
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

