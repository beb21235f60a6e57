"""`corral gc`: remove what this data dir's servers left behind and no longer use."""

from __future__ import annotations

import argparse
from typing import Any

import anyio

from corral.cli._common import log_to_stderr, settings_from
from corral.cli._output import add_json_flag, print_json


def add_parser(sub: Any) -> None:
    g = sub.add_parser(
        "gc",
        help="remove containers, volumes, and the sandbox network and its firewall rules, labelled by "
        "this data dir, that nothing uses (never what a live server uses)",
    )
    g.add_argument("--dry-run", action="store_true", help="only list them; opens the state read-only")
    add_json_flag(g)
    g.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from corral.service import open_services, tenancy
    from corral.service.reconcile import Plan

    log_to_stderr("WARNING")

    async def collect() -> tuple[Plan, list[str], list[str]]:
        # A live server may use this data dir: start nothing, restore nothing; a dry run writes nothing.
        async with open_services(settings_from(args), serve=False, read_only=args.dry_run) as services:
            with tenancy.acting_as(tenancy.OPERATOR):
                plan = await services.reconciler.plan()
                if not args.dry_run:
                    await services.reconciler.apply(plan, remove_orphans=True)
                # Snapshot and fork images nothing records any more.
                snapshots = services.snapshots
                images = await (snapshots.unrecorded_images() if args.dry_run else snapshots.gc())
                # The network goes after the containers on it; only when no sandbox needs it.
                return plan, await services.network.gc(dry_run=args.dry_run), images

    plan, fabric, images = anyio.run(collect)
    if args.json:
        as_dict = lambda item: {"kind": item.kind, "id": item.id, "name": item.name, "reason": item.reason}  # noqa: E731
        print_json(
            {
                "dry_run": args.dry_run,
                "removed" if not args.dry_run else "would_remove": [as_dict(i) for i in plan.removable],
                "kept": [as_dict(i) for i in plan.kept],
                "removed_network" if not args.dry_run else "would_remove_network": fabric,
                "removed_images" if not args.dry_run else "would_remove_images": images,
            }
        )
        return 0
    verb = "would remove" if args.dry_run else "removed"
    removable = plan.removable
    print(f"{verb} {len(removable)} leftover(s)" + (":" if removable else ""))
    for item in removable:
        print(f"  {item.describe()}")
    if images:
        print(f"{verb} {len(images)} unrecorded image(s): " + ", ".join(images))
    if fabric:
        print(f"{verb} the unused sandbox network and its rules: " + ", ".join(fabric))
    if plan.kept:
        print(f"kept {len(plan.kept)} in use by a live server on this data dir:")
        for item in plan.kept:
            print(f"  {item.describe()}")
    return 0
