"""`corral audit`: who called which tool, on which sandbox, what was asked, how it ended."""

from __future__ import annotations

import argparse
from typing import Any

import anyio

from corral.cli._common import settings_from
from corral.cli._output import OUTCOME_STYLE, add_json_flag, clock, console, parse_since, print_json, styled, table
from corral.sandbox_backend.store import AuditEntry, Store


def add_parser(sub: Any) -> None:
    a = sub.add_parser("audit", help="the audit trail of tool calls (newest last)")
    a.add_argument("--tenant", help="only this tenant's calls")
    a.add_argument("--sandbox", help="only calls on this sandbox (id, or name of an existing one)")
    a.add_argument("--since", help="only the last ... e.g. 15m, 1h, 2d")
    a.add_argument("--limit", type=int, default=200, help="at most this many records (default 200)")
    add_json_flag(a)
    a.set_defaults(func=run)


def entry_dict(entry: AuditEntry) -> dict[str, Any]:
    return {
        "ts": entry.ts,
        "tenant": entry.tenant,
        "tool": entry.tool,
        "sandbox": entry.sandbox,
        "outcome": entry.outcome,
        "duration_ms": round(entry.duration_ms, 1),
        "summary": entry.summary,
        "detail": entry.detail,
    }


def entry_table(entries: list[AuditEntry], *, with_sandbox: bool = True) -> Any:
    columns = ["time", "tenant", "tool", *(["sandbox"] if with_sandbox else []), "outcome", "ms", "asked", "detail"]
    return table(columns, [
        (clock(e.ts), e.tenant, e.tool, *([e.sandbox] if with_sandbox else []), styled(e.outcome, OUTCOME_STYLE),
         f"{e.duration_ms:.0f}", e.summary, e.detail)
        for e in entries
    ])


async def sandbox_ids(store: Store, ref: str) -> list[str]:
    """The ids a --sandbox value means: an existing sandbox's id or name (any tenant), else the
    value itself (the id of a sandbox deleted since)."""
    found = await store.sandboxes.find(ref, None)
    return [rec.id for rec in found] or [ref]


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    since = parse_since(args.since)

    async def read() -> list[AuditEntry]:
        store = await Store.open(settings.db_path, read_only=True)
        try:
            ids: list[str | None] = list(await sandbox_ids(store, args.sandbox)) if args.sandbox else [None]
            entries = []
            for sandbox_id in ids:
                entries += await store.audit.entries(
                    tenant=args.tenant, sandbox=sandbox_id, since=since, limit=args.limit
                )
            return sorted(entries, key=lambda e: e.ts)[-args.limit:]
        finally:
            await store.close()

    entries = anyio.run(read)
    if args.json:
        print_json([entry_dict(e) for e in entries])
        return 0
    out = console()
    if not entries:
        out.print("No audit records match.")
        return 0
    out.print(entry_table(entries))
    return 0
