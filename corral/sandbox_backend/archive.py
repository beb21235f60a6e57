"""Small tar archives Corral copies into containers."""

from __future__ import annotations

import io
import tarfile


def tar_directory(path: str, uid: int, gid: int, mode: int = 0o755) -> bytes:
    """A tar holding one empty directory owned by uid:gid (to give a foreign image a writable home)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(path.strip("/"))
        info.type = tarfile.DIRTYPE
        info.mode = mode
        info.uid, info.gid = uid, gid
        tar.addfile(info)
    return buf.getvalue()


def tar_file(name: str, data: bytes, uid: int, gid: int, mode: int = 0o644) -> bytes:
    """A tar holding one regular file `name` (no directory part) with `data`, owned by uid:gid."""
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"tar_file takes a plain file name, not {name!r}")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = mode
        info.uid, info.gid = uid, gid
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()
