"""`corral ls|rm|stop|start`: the operator's view of every tenant's sandboxes.

They work next to a live server on the same data dir: `ls` opens the database read-only; `rm`,
`stop` and `start` change only the sandboxes named (the live server learns of it from Docker's
events and drops what it held for them).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import anyio
from rich.text import Text

from corral.cli._common import log_to_stderr, operator_services
from corral.cli._output import STATUS_STYLE, add_json_flag, console, duration, print_json, styled, table
from corral.service import leases
from corral.service.inventory import SandboxRow

COLUMNS = ["id", "name", "tenant", "status", "image", "network", "cpu", "memory", "disk", "age", "idle", "lease"]


def add_parser(sub: Any) -> None:
    ls = sub.add_parser("ls", help="list every tenant's sandboxes with their status and resource use")
    ls.add_argument("--tenant", help="only this tenant's sandboxes")
    ls.add_argument("--no-stats", action="store_true", help="skip sampling CPU and memory use (faster)")
    add_json_flag(ls)
    ls.set_defaults(func=run_ls)
    for name, verb in (("rm", "delete"), ("stop", "stop"), ("start", "start")):
        p = sub.add_parser(name, help=f"{verb} sandboxes (any tenant's) by id or name")
        p.add_argument("sandboxes", nargs="+", metavar="SANDBOX")
        add_json_flag(p)
        p.set_defaults(func=run_change, change=name)


def row_cells(row: SandboxRow, now: float) -> list[str | Text | None]:
    rec, stats = row.record, row.stats
    cpu = None if stats is None or stats.cpu_percent is None else f"{stats.cpu_percent:.1f}%"
    used = "-" if stats is None else f"{stats.memory_bytes / 2**20:.0f}"
    return [
        rec.id,
        rec.name,
        rec.tenant,
        styled(row.status, STATUS_STYLE),
        rec.image,
        rec.network,
        cpu,
        f"{used}/{rec.memory_bytes // 2**20} MiB",
        None if rec.disk_bytes is None else f"{rec.disk_bytes // 2**20} MiB",
        duration(now - rec.created_at),
        duration(now - rec.last_used_at),
        lease_cell(row, now),
    ]


def lease_cell(row: SandboxRow, now: float) -> str | None:
    """When the idle rule stops it and when it is deleted, as time from now."""
    rec, parts = row.record, []
    stop = leases.stops_at(rec, rec.last_used_at)
    if stop is not None:
        parts.append(f"stops in {duration(max(stop - now, 0))}")
    if rec.expires_at is not None:
        parts.append(f"deleted in {duration(max(rec.expires_at - now, 0))}")
    return ", ".join(parts) or None


def sandbox_table(rows: list[SandboxRow]) -> Any:
    now = time.time()
    return table(COLUMNS, [row_cells(r, now) for r in rows])


def run_ls(args: argparse.Namespace) -> int:
    log_to_stderr("WARNING")

    async def collect() -> tuple[list[SandboxRow], str | None]:
        async with operator_services(args, read_only=True) as services:
            rows = await services.inventory.rows(stats=not args.no_stats)
            return rows, services.inventory.engine_error

    rows, engine_error = anyio.run(collect)
    if args.tenant:
        rows = [r for r in rows if r.record.tenant == args.tenant]
    if engine_error:
        print(f"corral: Docker did not answer, statuses are as last recorded: {engine_error}", file=sys.stderr)
    if args.json:
        print_json([r.as_dict() for r in rows])
        return 0
    out = console()
    if not rows:
        out.print("No sandboxes.")
        return 0
    out.print(sandbox_table(rows))
    return 0


def run_change(args: argparse.Namespace) -> int:
    log_to_stderr("WARNING")

    async def change() -> list[dict[str, Any]]:
        done = []
        async with operator_services(args, read_only=False) as services:
            sandboxes = services.sandboxes
            for ref in args.sandboxes:
                # stop/start are the lifecycle's: memory saved with the checkpoint and restored.
                memory: bool | None = None
                if args.change == "rm":
                    rec = await sandboxes.delete(ref)
                else:
                    change = await (sandboxes.stop(ref) if args.change == "stop" else sandboxes.start(ref))
                    rec, memory = change.rec, change.memory
                state = "deleted" if args.change == "rm" else rec.status
                item: dict[str, Any] = {"id": rec.id, "name": rec.name, "tenant": rec.tenant, "status": state}
                if memory is not None:
                    item["memory_kept"] = memory
                done.append(item)
        return done

    done = anyio.run(change)
    if args.json:
        print_json(done)
        return 0
    out = console()
    for item in done:
        label = f"{item['id']}" + (f" ({item['name']})" if item["name"] else "")
        memory = {True: " (memory kept)", False: " (memory not kept)"}.get(item.get("memory_kept"), "")  # type: ignore[arg-type]
        out.print(Text.assemble(f"{label} of tenant {item['tenant']}: ", styled(item["status"], STATUS_STYLE), memory))
    return 0
