"""How commands print: tables and colours for people (rich), `--json` for scripts.

Human output goes to stdout through rich (which drops colour when stdout is not a terminal);
`--json` prints exactly one JSON document on stdout and nothing else there.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from corral.errors import InvalidRequest

OUTCOME_STYLE = {"ok": "green", "error": "yellow", "crash": "bold red"}
STATUS_STYLE = {"running": "green", "stopped": "yellow", "lost": "red", "creating": "cyan", "error": "red"}
_SINCE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON for scripts instead of a table")


def console() -> Console:
    return Console(highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 200)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]], *, title: str | None = None) -> Table:
    """Cells are shown as given, never read as markup: commands, paths and names come from agents
    and sandboxes (a `[/x]` in a command must not break, or restyle, the operator's screen)."""
    t = Table(title=title, header_style="bold", show_lines=False, pad_edge=False, box=None)
    for column in columns:
        t.add_column(column, overflow="fold")
    for row in rows:
        t.add_row(*(cell if isinstance(cell, Text) else Text("-" if cell is None else str(cell)) for cell in row))
    return t


def styled(text: str, styles: dict[str, str]) -> Text:
    return Text(text, style=styles.get(text, ""))


def duration(seconds: float | None) -> str:
    """3s, 5m, 2h, 4d: the biggest unit that fits."""
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def clock(ts: float | None) -> str:
    if ts is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def parse_since(spec: str | None) -> float | None:
    """`--since 90s|15m|1h|2d|1w` as a timestamp; None when not given."""
    if spec is None:
        return None
    match = _SINCE.match(spec)
    if not match:
        raise InvalidRequest(f"--since {spec!r}: use a number with s, m, h, d or w, e.g. 15m, 1h, 2d")
    return time.time() - float(match.group(1)) * _UNIT[match.group(2)]
