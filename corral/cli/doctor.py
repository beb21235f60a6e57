"""`corral doctor`: is this machine ready to run sandboxes safely?"""

from __future__ import annotations

import argparse
import json
from typing import Any

import anyio

from corral.cli._common import settings_from


def add_parser(sub: Any) -> None:
    d = sub.add_parser("doctor", help="check Docker, gVisor and the image")
    d.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from corral.config import RUNTIME_GVISOR, RUNTIME_GVISOR_NET
    from corral.sandbox_backend.docker import DockerEngine

    settings = settings_from(args)

    async def check() -> dict[str, object]:
        engine = DockerEngine(settings.docker_url, disk_dir=settings.home / "disks")
        try:
            runtimes = await engine.runtimes()
            problem = engine.disk_quota_problem()
            return {
                "docker": "ok",
                "gvisor_runtime": RUNTIME_GVISOR in runtimes,
                "gvisor_net_runtime": RUNTIME_GVISOR_NET in runtimes,
                "image": settings.image,
                "image_present": await engine.image_exists(settings.image),
                "disk_limits": problem or "ok",
                "home": str(settings.home),
            }
        finally:
            await engine.close()

    report = anyio.run(check)
    print(json.dumps(report, indent=2))
    ready = report["gvisor_runtime"] and report["image_present"]
    return 0 if ready and (report["disk_limits"] == "ok" or settings.unsafe_no_disk_limit) else 1
