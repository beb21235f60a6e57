"""`corral doctor`: Docker, both gVisor runtimes (registered and really gVisor), the image, the data
dir's permissions, iptables. Every failed check says how to fix it; exit status 1 if a required one
failed."""

from __future__ import annotations

import argparse
from typing import Any

import anyio
from rich.text import Text

from corral.cli._common import log_to_stderr, settings_from
from corral.cli._output import add_json_flag, console, print_json
from corral.config import Settings
from corral.sandbox_backend.engine import Engine
from corral.service.diagnostics import Check, Doctor


def add_parser(sub: Any) -> None:
    d = sub.add_parser("doctor", help="check Docker, the gVisor runtimes, the image, the data dir, iptables")
    add_json_flag(d)
    d.set_defaults(func=run)


async def diagnose(settings: Settings, engine: Engine) -> list[Check]:
    try:
        return await Doctor(settings, engine).run()
    finally:
        await engine.close()


def report(checks: list[Check], as_json: bool) -> int:
    healthy = all(c.ok or not c.required for c in checks)
    if as_json:
        print_json({"ok": healthy, "checks": [c.as_dict() for c in checks]})
        return 0 if healthy else 1
    out = console()
    for check in checks:
        mark = "[green]ok[/]  " if check.ok else ("[red]FAIL[/]" if check.required else "[yellow]warn[/]")
        out.print(Text.from_markup(mark).append(f" {check.name}", style="bold").append(f": {check.detail}"))
        if not check.ok and check.fix:
            out.print(f"     fix: {check.fix}", markup=False)
    out.print("[green]ready[/]" if healthy else "[red]not ready[/]: fix the failed checks above")
    return 0 if healthy else 1


def run(args: argparse.Namespace) -> int:
    from corral.sandbox_backend.docker import DockerEngine

    log_to_stderr("WARNING")
    settings = settings_from(args)
    engine = DockerEngine(settings.docker_url, disk_dir=settings.home / "disks")
    return report(anyio.run(diagnose, settings, engine), args.json)
