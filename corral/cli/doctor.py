"""`corral doctor`: is this machine ready to run sandboxes safely?"""

from __future__ import annotations

import argparse
import json
from typing import Any

import anyio

from corral.cli._common import settings_from


def add_parser(sub: Any) -> None:
    d = sub.add_parser("doctor", help="check Docker, gVisor, the image and the host firewall for sandbox networks")
    d.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from corral.config import RUNTIME_GVISOR, RUNTIME_GVISOR_NET
    from corral.sandbox_backend import firewall
    from corral.sandbox_backend.docker import DockerEngine

    settings = settings_from(args)

    async def check() -> dict[str, object]:
        engine = DockerEngine()
        try:
            runtimes = await engine.runtimes()
            return {
                "docker": "ok",
                "gvisor_runtime": RUNTIME_GVISOR in runtimes,
                "gvisor_net_runtime": RUNTIME_GVISOR_NET in runtimes,
                "image": settings.image,
                "image_present": await engine.image_exists(settings.image),
                # Networked sandboxes need iptables and br_netfilter; "ok" or what to fix.
                "network_firewall": firewall.problem() or "ok",
                "corral_firewall_rules": len(await firewall.list_rules()),
                "home": str(settings.home),
            }
        finally:
            await engine.close()

    report = anyio.run(check)
    print(json.dumps(report, indent=2))
    return 0 if report["gvisor_runtime"] and report["image_present"] else 1
