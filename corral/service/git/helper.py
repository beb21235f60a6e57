"""The networked helper: a short-lived container of the sandbox's image that fetches and pushes
for a sandbox. Nothing the sandbox produces becomes a program or configuration there: the helper
gets a git bundle (objects and refs, checked with `git bundle verify`) and a shallow list the host
has checked, in files the host writes; every git runs by absolute path under command-line config
that turns off hooks, credential helpers and redirects, and that allows only the protocols the
step needs.

Its network is the sandboxes' own: the helper sits on the fenced sandbox network and reaches the
outside only through the egress proxy, with a credential that allows the one host and port of the
URL it was started for (service/network). The proxy resolves the name and refuses private, host
and link-local addresses the operator did not list, deciding on the address it connects to, so
neither a second DNS answer nor a redirect (which git does not follow anyway) leads elsewhere.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

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
from corral.service.network import HelperRoute

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Helper:
    deps: GitDeps
    container_id: str
    # How its network steps leave: the egress proxy, with a credential for one destination.
    route: HelperRoute | None = None

    async def git(
        self,
        *args: str,
        auth: Auth | None = None,
        network: bool = False,
        on_stderr: Listener | None = None,
        max_stdout: int = 4 * MIB,
    ) -> ExecOutput:
        """Run git in the helper: with `network`, speaking http(s) through the egress proxy to the
        helper's one destination (and with `auth` in this one process's environment); without,
        reading only local files."""
        config = [*HELPER_CONFIG, *(NETWORK_PROTOCOLS if network else BUNDLE_PROTOCOLS)]
        if network and self.route is not None:
            config += [("http.proxy", self.route.proxy_url), ("http.proxyAuthMethod", "basic")]
        env = {"GIT_ALLOW_PROTOCOL": "http:https" if network else "file", **(auth.env() if auth else {})}
        argv = [GIT, *(arg for key, value in config for arg in ("-c", f"{key}={value}")), *args]
        out = await self.run(argv, env=env, on_stderr=on_stderr, max_stdout=max_stdout)
        if network and self.route is not None:
            secret = self.route.secret
            out = ExecOutput(out.exit_code, out.stdout, out.stderr.replace(secret.encode(), b"***"))
            refused = self.deps.network.denial(self.route.identity)
            if out.exit_code != 0 and refused:
                raise InvalidRequest(f"refusing to reach {refused}")
        return out

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


@asynccontextmanager
async def open_helper(deps: GitDeps, rec: SandboxRecord, *, destination: str) -> AsyncIterator[Helper]:
    """A networked container of the sandbox's image for one operation on `destination`. Always
    removed, also on failure or cancellation."""
    engine = deps.engine
    runtime = RUNTIME_RUNC if deps.settings.unsafe_runc else RUNTIME_GVISOR_NET
    if runtime != RUNTIME_RUNC and runtime not in await engine.runtimes():
        raise RuntimeMissing(
            f"the gVisor runtime '{runtime}' (runsc with --network=host) is not registered with Docker, so "
            "Corral cannot fetch for a sandbox without network. Fix: run scripts/setup-host.sh as root."
        )
    async with deps.network.helper_route(rec, destination) as route:
        spec = deps.containers.helper_spec(
            rec, role="git", runtime=runtime, network=route.network, env=HELPER_ENV, workdir="/tmp"
        )
        container_id: str | None = None
        try:
            container_id = await deps.containers.create_helper(spec, rec)  # sized work volume, recorded
            await engine.put_archive(container_id, "/", tar_directory(HELPER_WORK, 1000, 1000))
            await engine.put_archive(container_id, "/", tar_directory(f"{HELPER_WORK}/in", 1000, 1000))
            await engine.start(container_id)
            log.debug("git helper %s started for %s", spec.name, rec.id)
            yield Helper(deps, container_id, route)
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
