"""`corral gc`: remove containers this data dir labelled but no longer records."""

from __future__ import annotations

import argparse
from typing import Any

import anyio

from corral.cli._common import log_to_stderr, settings_from


def add_parser(sub: Any) -> None:
    g = sub.add_parser(
        "gc", help="remove containers labelled by this data dir that have no sandbox record, and unused networks/rules"
    )
    g.add_argument("--dry-run", action="store_true")
    g.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from corral.service import open_services

    log_to_stderr("WARNING")

    async def collect() -> tuple[list[str], list[str]]:
        # A live server may use this data dir: start nothing, restore nothing; a dry run writes nothing.
        async with open_services(settings_from(args), serve=False, read_only=args.dry_run) as services:
            if args.dry_run:
                orphans = (await services.sandboxes.reconcile(dry_run=True))["orphans"]
                return orphans, await services.network.gc(dry_run=True)
            removed = await services.sandboxes.gc()
            return removed, await services.network.gc()

    names, fabric = anyio.run(collect)
    verb = "would remove" if args.dry_run else "removed"
    print(f"{verb} {len(names)} orphaned container(s)" + (": " + ", ".join(names) if names else ""))
    if fabric:
        print(f"{verb} the unused sandbox network and its rules: " + ", ".join(fabric))
    return 0
