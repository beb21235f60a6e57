"""`corral doctor`: is this machine ready to run sandboxes safely? Each check says how to fix it.

The gVisor check does not trust the runtime's name: it starts a tiny container with each runtime
and reads `uname -r`, which is 4.4.0 under gVisor's kernel and the host's version otherwise.
"""

from __future__ import annotations

import os
import stat
from dataclasses import asdict, dataclass

import anyio
import anyio.to_thread

from corral.config import RUNTIME_GVISOR, RUNTIME_GVISOR_NET, Settings
from corral.errors import CorralError
from corral.sandbox_backend import firewall
from corral.sandbox_backend.engine import Engine
from corral.service.containers import Containers

GVISOR_KERNEL = "4.4.0"
SETUP = "run scripts/setup-host.sh as root (or `make setup`)"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str | None = None
    required: bool = True  # a failed optional check is a warning

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class Doctor:
    def __init__(
        self, settings: Settings, engine: Engine, *, runtimes: tuple[str, ...] = (RUNTIME_GVISOR, RUNTIME_GVISOR_NET)
    ) -> None:
        self._settings = settings
        self._engine = engine
        self._runtimes = runtimes
        self._containers = Containers(settings)

    async def run(self) -> list[Check]:
        checks = [await self._docker()]
        if checks[0].ok:
            registered = await self._engine.runtimes()
            image = await self._image()
            checks.append(image)
            for runtime in self._runtimes:
                checks.append(self._registered(runtime, registered))
                if runtime in registered and image.ok:
                    checks.append(await self._runs_gvisor(runtime))
        checks += await anyio.to_thread.run_sync(self._host_checks)
        return checks

    async def _docker(self) -> Check:
        try:
            await self._engine.runtimes()
        except CorralError as exc:
            return Check("docker", False, str(exc), "start Docker (e.g. `dockerd &`) or set DOCKER_HOST; " + SETUP)
        return Check("docker", True, "the engine answers")

    def _registered(self, runtime: str, registered: set[str]) -> Check:
        if runtime in registered:
            return Check(f"runtime {runtime}", True, "registered with Docker")
        return Check(
            f"runtime {runtime}",
            False,
            f"Docker does not know the runtime {runtime!r} (it knows: {', '.join(sorted(registered)) or 'none'})",
            f"{SETUP}: it installs runsc and registers {RUNTIME_GVISOR} and {RUNTIME_GVISOR_NET} in "
            "/etc/docker/daemon.json, then reloads dockerd",
        )

    async def _image(self) -> Check:
        image = self._settings.image
        if await self._engine.image_exists(image):
            return Check("image", True, f"{image} is present")
        return Check("image", False, f"{image} is not present", "corral image build")

    async def _runs_gvisor(self, runtime: str) -> Check:
        """Start a tiny container with the runtime and ask its kernel's version."""
        name = f"gvisor {runtime}"
        spec = self._containers.probe_spec(runtime, self._settings.image)
        container_id: str | None = None
        try:
            with anyio.fail_after(120):
                container_id = await self._engine.create_container(spec)
                await self._engine.start(container_id)
                out = await self._engine.exec_collect(container_id, ["uname", "-r"], user=spec.user)
        except (CorralError, TimeoutError) as exc:
            return Check(name, False, f"a container could not run under {runtime}: {exc}", SETUP)
        finally:
            if container_id is not None:
                with anyio.CancelScope(shield=True):
                    try:
                        await self._engine.remove(container_id)
                    except CorralError:
                        pass
        kernel = out.stdout.decode(errors="replace").strip()
        if kernel == GVISOR_KERNEL:
            return Check(name, True, f"uname -r inside says {kernel} (gVisor)")
        return Check(
            name,
            False,
            f"uname -r inside says {kernel or '(nothing)'}: this runtime is not gVisor",
            f"point {runtime} at runsc in /etc/docker/daemon.json; {SETUP}",
        )

    def _host_checks(self) -> list[Check]:
        return [self._data_dir(), self._disk_limits(), self._iptables()]

    def _disk_limits(self) -> Check:
        probe = getattr(self._engine, "disk_quota_problem", None)
        problem = probe() if callable(probe) else None
        if problem is None:
            return Check("disk limits", True, "sandboxes get a size-limited /workspace")
        return Check(
            "disk limits",
            False,
            f"sandboxes cannot get a disk limit here: {problem}",
            f"{SETUP}; or serve with --unsafe-no-disk-limit (sandboxes can then fill the host's disk)",
            required=not self._settings.unsafe_no_disk_limit,
        )

    def _data_dir(self) -> Check:
        home, db = self._settings.home, self._settings.db_path
        if not home.exists():
            return Check("data dir", True, f"{home} does not exist yet; it is created 0700 on first use")
        fix = f"chmod 700 {home} && chmod 600 {db}*"
        problems = []
        if home.stat().st_uid != os.getuid():
            problems.append(f"{home} belongs to uid {home.stat().st_uid}, not to you ({os.getuid()})")
        for path in sorted(home.glob(db.name + "*")):
            if stat.S_IMODE(path.stat().st_mode) & 0o077:
                problems.append(f"{path} is {stat.S_IMODE(path.stat().st_mode):o} (others can read it)")
        if problems:
            return Check("data dir", False, "; ".join(problems), fix)
        mode = stat.S_IMODE(home.stat().st_mode)
        if mode & 0o077:
            # The database itself is private; a readable directory shows only file names.
            return Check("data dir", False, f"{home} is {mode:o}: others can list it", fix, required=False)
        return Check("data dir", True, f"{home} is private")

    def _iptables(self) -> Check:
        # Needed only by networked sandboxes (and git helpers): a warning otherwise.
        problem = firewall.problem()
        if problem is not None:
            return Check(
                "sandbox network firewall", False, problem, f"{SETUP} (as root, with iptables)", required=False
            )
        detail = "iptables and br_netfilter fence sandbox networks"
        return Check("sandbox network firewall", True, detail, required=False)
