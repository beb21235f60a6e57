"""Moving repository bytes between the host and the sandbox, through the agent."""

from __future__ import annotations

import base64
import logging
import secrets

import anyio

from corral.config import MIB
from corral.errors import CorralError, PayloadTooLarge
from corral.service.git.constants import CHUNK, MAX_TRANSFER, STAGING
from corral.service.git.deps import GitDeps
from corral.service.git.progress import Progress
from corral.service.git.runner import failure, run_in_sandbox

log = logging.getLogger(__name__)


async def upload_staged(
    deps: GitDeps, ref: str, data: bytes, progress: Progress, span: tuple[float, float], suffix: str
) -> str:
    path = f"{STAGING}/{secrets.token_hex(6)}{suffix}"
    total = max(len(data), 1)
    for offset in range(0, max(len(data), 1), CHUNK):
        chunk = data[offset : offset + CHUNK]
        params = {"path": path, "data_b64": base64.b64encode(chunk).decode(), "mkdirs": True, "append": offset > 0}
        await deps.sandboxes.request(ref, "write_file", params, timeout=120)
        done = offset + len(chunk)
        await progress.step(
            span[0] + (span[1] - span[0]) * done / total,
            f"copying into the sandbox: {done / MIB:.1f} of {len(data) / MIB:.1f} MiB",
        )
    return path


async def download_staged(deps: GitDeps, ref: str, path: str) -> bytes:
    data = bytearray()
    while True:
        res = await deps.sandboxes.request(
            ref, "read_file", {"path": path, "offset": len(data), "max_bytes": CHUNK}, timeout=120
        )
        chunk = base64.b64decode(str(res.get("data_b64", "")))
        data += chunk
        if len(data) > MAX_TRANSFER:
            raise PayloadTooLarge(f"the repository is larger than {MAX_TRANSFER // MIB} MiB, Corral's transfer limit")
        if not chunk or len(data) >= int(res.get("size", 0)):
            return bytes(data)


async def remove_staged(deps: GitDeps, ref: str, path: str) -> None:
    with anyio.CancelScope(shield=True):
        try:
            await run_in_sandbox(deps, ref, ["rm", "-f", "--", path], cwd="/")
        except CorralError as exc:
            log.debug("could not remove %s: %s", path, exc)


# Objects, refs and the shallow list: the data of a repository, none of its config or hooks.
_PACK_SCRIPT = r"""
set -e
cd "$1"
cd "$(git rev-parse --git-common-dir)"
out=$2
set --
for f in objects refs packed-refs shallow HEAD; do
  if [ -e "$f" ]; then set -- "$@" "$f"; fi
done
mkdir -p "$(dirname "$out")"
tar -cf "$out" "$@"
"""


async def pack_repo(deps: GitDeps, ref: str, repo: str, progress: Progress, at: float) -> bytes:
    path = f"{STAGING}/{secrets.token_hex(6)}.tar"
    try:
        res = await run_in_sandbox(deps, ref, ["sh", "-c", _PACK_SCRIPT, "sh", repo, path], cwd=repo)
        if not res.ok:
            raise failure("packing the repository", res, repo=repo)
        data = await download_staged(deps, ref, path)
    finally:
        await remove_staged(deps, ref, path)
    await progress.step(at, f"read the repository from the sandbox ({len(data) / MIB:.1f} MiB)")
    return data


# Give the copied objects and refs a fresh config of the helper's own; no alternates from the sandbox.
HELPER_INIT = "git init -q --bare repo.git && rm -f repo.git/objects/info/alternates"
