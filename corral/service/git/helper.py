"""The networked helper: a short-lived container of the sandbox's image that fetches and pushes
for a sandbox without network. Nothing from the sandbox runs there."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

import anyio

from corral.config import MIB, RUNTIME_GVISOR_NET, RUNTIME_RUNC, SANDBOX_USER
from corral.errors import CorralError, InvalidRequest, PayloadTooLarge, RuntimeMissing
from corral.sandbox_backend.archive import tar_directory
from corral.sandbox_backend.engine import ExecOutput
from corral.sandbox_backend.store import SandboxRecord
from corral.service.git.constants import HELPER_ENV, HELPER_WORK, Listener
from corral.service.git.deps import GitDeps
from corral.service.git.secrets import Auth

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Helper:
    deps: GitDeps
    container_id: str

    async def run(
        self,
        argv: Sequence[str],
        *,
        auth: Auth | None = None,
        on_stderr: Listener | None = None,
        max_stdout: int = 4 * MIB,
    ) -> ExecOutput:
        limit = self.deps.settings.exec.max_timeout
        try:
            with anyio.fail_after(limit):
                return await self.deps.engine.exec_collect(
                    self.container_id,
                    argv,
                    user=SANDBOX_USER,
                    workdir=HELPER_WORK,
                    env=auth.env() if auth else None,
                    on_stderr=on_stderr,
                    max_stdout=max_stdout,
                )
        except TimeoutError:
            raise InvalidRequest(
                f"{argv[0]} {argv[1] if len(argv) > 1 else ''} did not finish within {limit:g} s"
            ) from None
        except PayloadTooLarge:
            raise PayloadTooLarge(
                f"the repository is larger than {max_stdout // MIB} MiB, Corral's transfer limit"
            ) from None


async def check_destination(url: str, allowed: Sequence[str]) -> None:
    """Refuse to send the networked helper to a non-public address unless the operator allowed it."""
    host = urlsplit(url).hostname or ""
    try:
        infos = await anyio.getaddrinfo(host, None)
    except OSError as exc:
        raise InvalidRequest(f"cannot resolve the host {host!r} of the repository URL ({exc})") from None
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if (
            address.is_global
            or host in allowed
            or any("/" in entry and address in ipaddress.ip_network(entry, strict=False) for entry in allowed)
            or str(address) in allowed
        ):
            continue
        raise InvalidRequest(
            f"refusing to reach {host} ({address}): it is a private, loopback or link-local address. "
            "The operator can allow it with CORRAL_GIT_ALLOW_PRIVATE (hosts, IPs or CIDRs, comma-separated)."
        )


@asynccontextmanager
async def open_helper(
    deps: GitDeps,
    rec: SandboxRecord,
    inputs: Sequence[tuple[str, bytes]] = (),
    *,
    destination: str,
) -> AsyncIterator[Helper]:
    """A networked container of the sandbox's image; `inputs` are (directory, tar) pairs copied in
    before it starts. Always removed, also on failure or cancellation."""
    await check_destination(destination, deps.settings.git_allow_private)
    engine = deps.engine
    runtime = RUNTIME_RUNC if deps.settings.unsafe_runc else RUNTIME_GVISOR_NET
    if runtime != RUNTIME_RUNC and runtime not in await engine.runtimes():
        raise RuntimeMissing(
            f"the gVisor runtime '{runtime}' (runsc with --network=host) is not registered with Docker, so "
            "Corral cannot fetch for a sandbox without network. Fix: run scripts/setup-host.sh as root."
        )
    network = deps.containers.egress_network
    await engine.ensure_network(network, deps.containers.network_labels("egress"))
    spec = deps.containers.helper_spec(
        rec, role="git", runtime=runtime, network=network, env=HELPER_ENV, workdir="/tmp"
    )
    container_id: str | None = None
    try:
        container_id = await deps.containers.create_helper(spec, rec)  # sized work volume, recorded
        await engine.put_archive(container_id, "/", tar_directory(HELPER_WORK, 1000, 1000))
        for directory, data in inputs:
            await engine.put_archive(container_id, "/", tar_directory(directory, 1000, 1000))
            await engine.put_archive(container_id, directory, data)
        await engine.start(container_id)
        log.debug("git helper %s started for %s", spec.name, rec.id)
        yield Helper(deps, container_id)
    finally:
        if container_id is not None:
            with anyio.CancelScope(shield=True):
                try:
                    await deps.containers.remove_helper(container_id)
                except CorralError as exc:
                    log.warning("could not remove git helper %s: %s", spec.name, exc)


async def missing_branch_error(helper: Helper, url: str, auth: Auth | None, branch: str) -> CorralError:
    res = await helper.run(["git", "ls-remote", "--heads", "--", url], auth=auth)
    names = [
        line.split("refs/heads/", 1)[1]
        for line in res.stdout.decode(errors="replace").splitlines()
        if "refs/heads/" in line
    ]
    listing = ", ".join(names[:50]) or "none (the repository is empty)"
    return InvalidRequest(f"branch {branch!r} does not exist in {url}; its branches are: {listing}")


def is_missing_branch(text: str) -> bool:
    low = text.lower()
    return ("remote branch" in low and "not found" in low) or "couldn't find remote ref" in low
