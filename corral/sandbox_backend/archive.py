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
