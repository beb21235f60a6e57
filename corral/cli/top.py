"""`corral top`: a live, refreshing view of every sandbox and its CPU and memory use."""

from __future__ import annotations

import argparse
import time
from typing import Any

import anyio
from rich.live import Live
from rich.text import Text

from corral.cli._common import log_to_stderr, operator_services
from corral.cli._output import add_json_flag, console, print_json
from corral.cli.sandboxes import sandbox_table


def add_parser(sub: Any) -> None:
    t = sub.add_parser("top", help="live view of sandboxes and their CPU and memory use (Ctrl-C quits)")
    t.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes (default 2)")
    t.add_argument("--iterations", type=int, help="stop after this many refreshes")
    add_json_flag(t)  # one sample as JSON, then exit
    t.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    log_to_stderr("WARNING")

    async def watch() -> None:
        async with operator_services(args, read_only=True) as services:
            if args.json:
                print_json([row.as_dict() for row in await services.inventory.rows()])
                return
            out = console()
            with Live(console=out, auto_refresh=False, screen=out.is_terminal) as live:
                done = 0
                while args.iterations is None or done < args.iterations:
                    rows = await services.inventory.rows()
                    header = f"corral top — {len(rows)} sandbox(es) — {time.strftime('%H:%M:%S')}"
                    if services.inventory.engine_error:
                        header += f" — Docker: {services.inventory.engine_error}"
                    grid = sandbox_table(rows)
                    grid.title = Text(header)  # Docker's error text is not markup
                    live.update(grid, refresh=True)
                    done += 1
                    if args.iterations is None or done < args.iterations:
                        await anyio.sleep(max(0.2, args.interval))  # the refresh period, not synchronisation

    try:
        anyio.run(watch)
    except KeyboardInterrupt:
        pass
    return 0
