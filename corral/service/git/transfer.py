"""Moving repository bytes between the host and the sandbox, through the agent.

Out of the sandbox comes only what a helper can check: a git bundle (objects and refs) that
/usr/bin/git writes, and the shallow list as commit ids the host validates. Both are untrusted
bytes to the host; neither is ever unpacked as files, config or hooks anywhere.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

import anyio

from corral.config import MIB
from corral.errors import CorralError, InvalidRequest, PayloadTooLarge
from corral.service.git.constants import CHUNK, MAX_SHALLOW, MAX_TRANSFER, STAGING
from corral.service.git.deps import GitDeps
from corral.service.git.progress import Progress
from corral.service.git.runner import failure, run_git

log = logging.getLogger(__name__)

_OID_RE = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")


async def upload_staged(
    deps: GitDeps, ref: str, data: bytes, progress: Progress, span: tuple[float, float], suffix: str
) -> str:
    path = f"{STAGING}/{secrets.token_hex(6)}{suffix}"
    total = max(len(data), 1)
    for offset in range(0, max(len(data), 1), CHUNK):
        chunk = data[offset : offset + CHUNK]
        params = {"path": path, "bytes": chunk, "mkdirs": True, "append": offset > 0}
        await deps.sandboxes.request(ref, "write_file", params, timeout=120)
        done = offset + len(chunk)
        await progress.step(
            span[0] + (span[1] - span[0]) * done / total,
            f"copying into the sandbox: {done / MIB:.1f} of {len(data) / MIB:.1f} MiB",
        )
    return path


async def download_staged(deps: GitDeps, ref: str, path: str, limit: int = MAX_TRANSFER) -> bytes:
    data = bytearray()
    while True:
        params = {"path": path, "offset": len(data), "max_bytes": CHUNK, "binary": True}
        res = await deps.sandboxes.request(ref, "read_file", params, timeout=120)
        chunk, size = res["bytes"], res["size"]  # validated by replies.check_reply
        if not isinstance(chunk, bytes):
            raise InvalidRequest(f"the sandbox's agent sent an unreadable chunk of {path}")
        data += chunk
        if len(data) > limit:
            raise PayloadTooLarge(f"{path} is larger than {limit // MIB or 1} MiB, Corral's transfer limit")
        if not chunk or len(data) >= size:
            return bytes(data)


async def remove_staged(deps: GitDeps, ref: str, path: str) -> None:
    with anyio.CancelScope(shield=True):
        try:
            await deps.sandboxes.request(ref, "fs_delete", {"path": path}, timeout=30)
        except CorralError as exc:
            log.debug("could not remove %s: %s", path, exc)


@dataclass(frozen=True)
class RepoData:
    """What a helper gets of a sandbox repository: a bundle (empty when there is nothing to bundle)
    and the shallow list."""

    bundle: bytes
    shallow: list[str]


async def bundle_repo(
    deps: GitDeps,
    ref: str,
    repo: str,
    revs: Sequence[str],
    common_dir: str,
    progress: Progress,
    at: float,
) -> RepoData:
    """Bundle `revs` of the sandbox repository (objects and refs only) and read its shallow list."""
    shallow = await _shallow_list(deps, ref, common_dir)
    await deps.sandboxes.request(ref, "fs_mkdir", {"path": STAGING}, timeout=30)
    path = f"{STAGING}/{secrets.token_hex(6)}.bundle"
    try:
        res = await run_git(deps, ref, repo, "bundle", "create", "-q", path, *revs)
        if not res.ok:
            if "empty bundle" in res.text:
                return RepoData(b"", shallow)
            raise failure("bundling the repository", res, repo=repo)
        data = await download_staged(deps, ref, path)
    finally:
        await remove_staged(deps, ref, path)
    await progress.step(at, f"read the repository from the sandbox ({len(data) / MIB:.1f} MiB)")
    return RepoData(data, shallow)


async def _shallow_list(deps: GitDeps, ref: str, common_dir: str) -> list[str]:
    """The commit ids of the repository's `shallow` file, each checked to be just that."""
    if not common_dir.startswith("/"):
        return []
    path = f"{common_dir.rstrip('/')}/shallow"
    stat = await deps.sandboxes.request(ref, "stat", {"path": path}, timeout=30)
    if not stat.get("exists"):
        return []
    text = (await download_staged(deps, ref, path, limit=MAX_SHALLOW * 66)).decode("ascii", errors="replace")
    oids = [line.strip() for line in text.splitlines() if line.strip()]
    if len(oids) > MAX_SHALLOW or not all(_OID_RE.match(oid) for oid in oids):
        raise InvalidRequest(f"{path} is not a list of commit ids; repair the repository (git fetch --unshallow)")
    return oids
