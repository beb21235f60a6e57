"""The networked helper: a short-lived container of the sandbox's image that fetches and pushes
for a sandbox. Nothing the sandbox produces becomes a program or configuration there: the helper
gets a git bundle (objects and refs, checked with `git bundle verify`) and a shallow list the host
has checked, in files the host writes; every git runs by absolute path under command-line config
that turns off hooks, credential helpers, proxies and redirects, and that allows only the
protocols the step needs; the network steps connect only to the addresses the host checked."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

import anyio

from corral.config import MIB, RUNTIME_GVISOR_NET, RUNTIME_RUNC, SANDBOX_USER
from corral.errors import CorralError, InvalidRequest, PayloadTooLarge, RuntimeMissing
from corral.sandbox_backend.archive import tar_directory, tar_file
from corral.sandbox_backend.engine import ExecOutput
from corral.sandbox_backend.store import SandboxRecord
from corral.service.git.constants import (
    BUNDLE_PROTOCOLS,
    GIT,
    HELPER_BUNDLE,
    HELPER_CONFIG,
    HELPER_ENV,
    HELPER_REPO,
    HELPER_WORK,
    NETWORK_PROTOCOLS,
    Listener,
)
from corral.service.git.deps import GitDeps
from corral.service.git.secrets import Auth

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Helper:
    deps: GitDeps
    container_id: str
    # Pins the destination's name to the addresses check_destination approved, so a second DNS
    # answer cannot send git elsewhere (curl's CURLOPT_RESOLVE; git >= 2.37 reads it from config).
    resolve: str | None = None

    async def git(
        self,
        *args: str,
        auth: Auth | None = None,
        network: bool = False,
        on_stderr: Listener | None = None,
        max_stdout: int = 4 * MIB,
    ) -> ExecOutput:
        """Run git in the helper: with `network`, speaking http(s) to the checked destination (and
        with `auth` in this one process's environment); without, reading only local files."""
        config = [*HELPER_CONFIG, *(NETWORK_PROTOCOLS if network else BUNDLE_PROTOCOLS)]
        if network and self.resolve:
            config.append(("http.curloptResolve", self.resolve))
        env = {"GIT_ALLOW_PROTOCOL": "http:https" if network else "file", **(auth.env() if auth else {})}
        argv = [GIT, *(arg for key, value in config for arg in ("-c", f"{key}={value}")), *args]
        return await self.run(argv, env=env, on_stderr=on_stderr, max_stdout=max_stdout)

    async def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
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
                    env=env,
                    on_stderr=on_stderr,
                    max_stdout=max_stdout,
                )
        except TimeoutError:
            step = " ".join(a for a in argv[:8] if not a.startswith("-c") and "=" not in a)
            raise InvalidRequest(f"{step} did not finish within {limit:g} s") from None
        except PayloadTooLarge:
            raise PayloadTooLarge(
                f"the repository is larger than {max_stdout // MIB} MiB, Corral's transfer limit"
            ) from None

    async def put_file(self, path: str, data: bytes) -> None:
        """Write one regular file (uid 1000, mode 0644) that the host made: no names, links or modes
        from anywhere else."""
        directory, _, name = path.rpartition("/")
        await self.deps.engine.put_archive(self.container_id, directory, tar_file(name, data, 1000, 1000))

    async def import_bundle(self, bundle: bytes, shallow: Sequence[str], refspecs: Sequence[str]) -> None:
        """Give the helper's bare repository the sandbox's objects and refs: the bundle is verified
        and fetched; the shallow list (commit ids the host checked) tells git where history stops."""
        init = await self.git("init", "-q", "--bare", HELPER_REPO)
        if init.exit_code != 0:
            raise InvalidRequest(f"could not prepare the helper's repository: {init.stderr.decode(errors='replace')}")
        if shallow:
            await self.put_file(f"{HELPER_WORK}/{HELPER_REPO}/shallow", "".join(f"{c}\n" for c in shallow).encode())
        if not bundle:
            return
        await self.put_file(HELPER_BUNDLE, bundle)
        for step in (("bundle", "verify", "-q", HELPER_BUNDLE), ("fetch", "-q", "--no-tags", HELPER_BUNDLE, *refspecs)):
            out = await self.git(f"--git-dir={HELPER_REPO}", *step)
            if out.exit_code != 0:
                text = out.stderr.decode(errors="replace").strip()[-1500:]
                raise InvalidRequest(f"the repository data the sandbox produced is not a valid git bundle: {text}")


def _pin(url: str, addresses: Sequence[str]) -> str | None:
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        ipaddress.ip_address(host)
        return None  # an address needs no name resolution
    except ValueError:
        pass
    port = parts.port or (443 if parts.scheme == "https" else 80)
    shown = [f"[{a}]" if ":" in a else a for a in addresses]
    return f"{host}:{port}:{','.join(shown)}"


async def check_destination(url: str, allowed: Sequence[str]) -> list[str]:
    """Refuse to send the networked helper to a non-public address unless the operator allowed it;
    returns the addresses it may connect to."""
    host = urlsplit(url).hostname or ""
    try:
        infos = await anyio.getaddrinfo(host, None)
    except OSError as exc:
        raise InvalidRequest(f"cannot resolve the host {host!r} of the repository URL ({exc})") from None
    addresses: list[str] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if not (
            address.is_global
            or host in allowed
            or any("/" in entry and address in ipaddress.ip_network(entry, strict=False) for entry in allowed)
            or str(address) in allowed
        ):
            raise InvalidRequest(
                f"refusing to reach {host} ({address}): it is a private, loopback or link-local address. "
                "The operator can allow it with CORRAL_GIT_ALLOW_PRIVATE (hosts, IPs or CIDRs, comma-separated)."
            )
        if str(address) not in addresses:
            addresses.append(str(address))
    return addresses


@asynccontextmanager
async def open_helper(deps: GitDeps, rec: SandboxRecord, *, destination: str) -> AsyncIterator[Helper]:
    """A networked container of the sandbox's image for one operation on `destination`. Always
    removed, also on failure or cancellation."""
    addresses = await check_destination(destination, deps.settings.git_allow_private)
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
        await engine.put_archive(container_id, "/", tar_directory(f"{HELPER_WORK}/in", 1000, 1000))
        await engine.start(container_id)
        log.debug("git helper %s started for %s", spec.name, rec.id)
        yield Helper(deps, container_id, _pin(destination, addresses))
    finally:
        if container_id is not None:
            with anyio.CancelScope(shield=True):
                try:
                    await deps.containers.remove_helper(container_id)
                except CorralError as exc:
                    log.warning("could not remove git helper %s: %s", spec.name, exc)


async def missing_branch_error(helper: Helper, url: str, auth: Auth | None, branch: str) -> CorralError:
    res = await helper.git("ls-remote", "--heads", "--", url, auth=auth, network=True)
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
