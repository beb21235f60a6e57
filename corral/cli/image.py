"""`corral image build|status`: the default sandbox image, built offline from Debian packages."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import anyio

from corral.cli._output import add_json_flag, print_json
from corral.config import DEFAULT_IMAGE


def add_parser(sub: Any) -> None:
    i = sub.add_parser("image", help="build or check the default sandbox image")
    i.add_argument("action", choices=["build", "status"])
    i.add_argument("--name", help=f"image name (default {DEFAULT_IMAGE})")
    i.add_argument("--force", action="store_true", help="rebuild even if present")
    add_json_flag(i)
    i.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from corral.sandbox_backend.docker import DockerEngine

    name = args.name or DEFAULT_IMAGE

    async def size() -> int | None:
        engine = DockerEngine()
        try:
            return await engine.image_size(name)
        finally:
            await engine.close()

    size_bytes = anyio.run(size)
    present = size_bytes is not None
    if args.action == "status":
        if args.json:
            print_json({"image": name, "present": present, "size_bytes": size_bytes})
        elif size_bytes is None:
            print(f"{name}: missing (run: corral image build)")
        else:
            print(f"{name}: present, {size_bytes / 1e9:.2f} GB ({size_bytes / 2**20:.0f} MiB)")
        return 0 if present else 1
    if present and not args.force:
        if args.json:
            print_json({"image": name, "built": False, "present": True})
        else:
            print(f"{name} is already built (use --force to rebuild)", file=sys.stderr)
        return 0
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from corral.sandbox_backend.image import build_image

    with Progress(
        TextColumn("[bold]{task.description:<50}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        transient=False,
        console=Console(stderr=True),  # stdout stays clean for --json
    ) as progress:
        task = progress.add_task(f"building {name}", total=1.0)

        def report(stage: str, fraction: float) -> None:
            progress.update(task, completed=fraction, description=stage[:50])

        build_image(name, progress=report)
    if args.json:
        print_json({"image": name, "built": True, "present": True})
    else:
        print(f"built {name}", file=sys.stderr)
    return 0
