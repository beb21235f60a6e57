"""`corral` command line: one module per command group."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from corral.cli import audit, doctor, gc, image, logs, sandboxes, serve, tokens, top
from corral.errors import CorralError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="corral", description="MCP server giving AI agents gVisor sandboxes.")
    sub = p.add_subparsers(dest="command", required=True)
    for command in (serve, sandboxes, logs, audit, top, tokens, doctor, gc, image):
        command.add_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except CorralError as exc:
        print(f"corral: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
