"""`corral token create|list|revoke`: HTTP tenants and their bearer tokens.

A new token is printed once, alone on the last line of the output (`corral token create ci | tail
-1`); the data dir keeps only its hash. Revoking takes effect on a live server's next request.
"""

from __future__ import annotations

import argparse
from typing import Any

import anyio

from corral.cli._common import open_tenants, settings_from
from corral.cli._output import add_json_flag, clock, console, print_json, table
from corral.config import Quota
from corral.sandbox_backend.store import TokenRecord
from corral.service.tenants import quota_of


def add_parser(sub: Any) -> None:
    t = sub.add_parser("token", help="create, list and revoke HTTP tenants' bearer tokens")
    actions = t.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="create a tenant and print its token once")
    create.add_argument("name", help="the tenant's name (a-z, 0-9, _.-)")
    create.add_argument("--max-sandboxes", type=int, help="sandboxes it may keep at once")
    create.add_argument("--max-memory-mb", type=int, help="memory of all its sandboxes together, MiB")
    create.add_argument("--max-disk-mb", type=int, help="disk of all its sandboxes together, MiB")
    create.add_argument("--max-executions", type=int, help="commands/code runs in flight at once")
    add_json_flag(create)
    listing = actions.add_parser("list", help="tenants with tokens: created, last used, quotas (never the token)")
    add_json_flag(listing)
    revoke = actions.add_parser("revoke", help="revoke a tenant's token (effective at once)")
    revoke.add_argument("name")
    add_json_flag(revoke)
    t.set_defaults(func=run)


def _row(rec: TokenRecord) -> dict[str, Any]:
    quota = quota_of(rec)
    return {
        "name": rec.name,
        "created_at": rec.created_at,
        "last_used_at": rec.last_used_at,
        "max_sandboxes": quota.sandboxes,
        "max_memory_mb": quota.memory_mb,
        "max_disk_mb": quota.disk_mb,
        "max_executions": quota.executions,
    }


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)

    async def act() -> Any:
        async with open_tenants(settings, read_only=args.action == "list") as tenants:
            if args.action == "create":
                quota = Quota(args.max_sandboxes, args.max_memory_mb, args.max_disk_mb, args.max_executions)
                return await tenants.create(args.name, quota)
            if args.action == "list":
                return await tenants.list()
            return await tenants.revoke(args.name)

    result = anyio.run(act)
    out = console()
    if args.action == "create":
        row = _row(result.record)
        if args.json:
            print_json({**row, "token": result.secret})
            return 0
        quota = quota_of(result.record).over(settings.tenant_quota)
        out.print(f"Created tenant {args.name} (quotas: {quota.describe()}).", markup=False)
        out.print(
            "Clients send it as `Authorization: Bearer <token>`. It is shown only now; Corral keeps its hash.",
            markup=False,
        )
        print(result.secret)  # alone on the last line, for `| tail -1`
        return 0
    if args.action == "list":
        rows = [_row(rec) for rec in result]
        if args.json:
            print_json(rows)
            return 0
        if not rows:
            out.print("No tokens yet: `corral token create NAME` makes one.")
            return 0
        columns = ["name", "created", "last used", "max sandboxes", "max memory MiB", "max disk MiB", "max executions"]
        out.print(table(columns, [
            (r["name"], clock(r["created_at"]), clock(r["last_used_at"]), r["max_sandboxes"], r["max_memory_mb"],
             r["max_disk_mb"], r["max_executions"])
            for r in rows
        ]))
        return 0
    if args.json:
        print_json({"name": result.name, "revoked": True})
    else:
        out.print(f"Revoked the token of tenant {result.name}; its next request is refused.", markup=False)
    return 0
