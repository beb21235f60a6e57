"""`corral gc`: remove containers this data dir labelled but no longer records."""

from __future__ import annotations

import argparse
from typing import Any

import anyio

from corral.cli._common import log_to_stderr, settings_from
from corral.cli._output import add_json_flag, print_json


def add_parser(sub: Any) -> None:
    g = sub.add_parser("gc", help="remove containers labelled by this data dir that have no sandbox record")
    g.add_argument("--dry-run", action="store_true")
    add_json_flag(g)
    g.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from corral.service import open_services

    log_to_stderr("WARNING")

    async def collect() -> list[str]:
        # A live server may use this data dir: start nothing, restore nothing; a dry run writes nothing.
        async with open_services(settings_from(args), serve=False, read_only=args.dry_run) as services:
            if args.dry_run:
                return (await services.sandboxes.reconcile(dry_run=True))["orphans"]
            return await services.sandboxes.gc()

    names = anyio.run(collect)
    if args.json:
        print_json({"dry_run": args.dry_run, "containers": names})
        return 0
    verb = "would remove" if args.dry_run else "removed"
    print(f"{verb} {len(names)} orphaned container(s)" + (": " + ", ".join(names) if names else ""))
    return 0
