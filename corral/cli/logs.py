"""`corral logs SANDBOX`: a sandbox's audit lines and the recent output of its background
processes, read without moving any client's read cursor (works next to a live server)."""

from __future__ import annotations

import argparse
from typing import Any

import anyio
from rich.text import Text

from corral.cli._common import log_to_stderr, operator_services
from corral.cli._output import add_json_flag, console, parse_since, print_json
from corral.cli.audit import entry_dict, entry_table
from corral.sandbox_backend.store import AuditEntry
from corral.service.processes import ProcessInfo


def add_parser(sub: Any) -> None:
    g = sub.add_parser("logs", help="a sandbox's audit lines and its background processes' output")
    g.add_argument("sandbox", metavar="SANDBOX", help="id or name (any tenant's)")
    g.add_argument("--since", help="audit lines of the last ... only, e.g. 15m, 1h")
    g.add_argument("--bytes", type=int, default=4096, help="output bytes per process (default 4096)")
    add_json_flag(g)
    g.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    log_to_stderr("WARNING")
    since = parse_since(args.since)

    async def collect() -> tuple[str, list[AuditEntry], list[tuple[ProcessInfo, str | None]]]:
        async with operator_services(args, read_only=True) as services:
            rec = await services.sandboxes.resolve(args.sandbox)
            entries = await services.audit.entries(sandbox=rec.id, since=since, limit=1000)
            return rec.id, entries[::-1], await services.processes.tail(rec.id, max(1, args.bytes))

    sandbox_id, entries, processes = anyio.run(collect)
    if args.json:
        print_json({
            "sandbox": sandbox_id,
            "audit": [entry_dict(e) for e in entries],
            "processes": [{**info.model_dump(), "output_tail": text} for info, text in processes],
        })
        return 0
    out = console()
    out.print(Text(f"Audit of {sandbox_id}", style="bold"))
    out.print(entry_table(entries, with_sandbox=False) if entries else "no tool calls recorded")
    for info, text in processes:
        state = "running" if info.running else f"exited {info.exit_code}"
        out.print(Text.assemble("\n", (info.id, "bold"), f" ({state}) $ {info.command}"))
        out.print(text if text is not None else "(output not readable: the sandbox is not running)", markup=False)
    return 0
