"""`corral` command line: serve, image build/status, gc, doctor."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence

import anyio

from corral.config import DEFAULT_IMAGE, Settings, parse_host_dirs
from corral.errors import CorralError


def _settings(args: argparse.Namespace) -> Settings:
    settings = Settings.from_env()
    if getattr(args, "image", None):
        settings = settings.with_(image=args.image)
    if getattr(args, "unsafe_runc_no_gvisor", False):
        settings = settings.with_(unsafe_runc=True)
    if getattr(args, "allow_host_dir", None):
        extra = parse_host_dirs(os.pathsep.join(args.allow_host_dir))
        settings = settings.with_(host_dirs=settings.host_dirs + extra)
    return settings


def _log_to_stderr(level: str) -> None:
    # stdout belongs to the protocol in stdio mode: every log line goes to stderr.
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )


def cmd_serve(args: argparse.Namespace) -> int:
    from corral.server.app import build_server
    from corral.server.http import HttpOptions, build_http_app
    from corral.tools import parse_groups

    _log_to_stderr(args.log_level)
    settings = _settings(args)
    groups = parse_groups(args.tools)
    transports = tuple(t.strip() for t in args.transport.split(",") if t.strip())
    unknown = set(transports) - {"stdio", "sse", "http"}
    if unknown or not transports or ("stdio" in transports and len(transports) > 1):
        print(f"--transport: use stdio, sse, http or sse,http (got {args.transport!r})", file=sys.stderr)
        return 2
    if settings.unsafe_runc:
        logging.getLogger("corral").warning(
            "UNSAFE: --unsafe-runc-no-gvisor: sandboxes run under runc and share the host kernel"
        )
    if transports == ("stdio",):
        build_server(settings, groups=groups).run("stdio")
        return 0

    import uvicorn

    opts = HttpOptions(
        host=args.host,
        port=args.port,
        token=args.token or os.environ.get("CORRAL_TOKEN") or None,
        insecure_no_auth=args.insecure_no_auth,
        transports=transports,
        allowed_hosts=tuple(args.allowed_host or ()),
    )
    app, _ = build_http_app(settings, opts, groups)
    _print_banner(opts)
    uvicorn.run(app, host=opts.host, port=opts.port, log_level=args.log_level.lower(), lifespan="on")
    return 0


def _print_banner(opts: object) -> None:
    from corral.server.http import HttpOptions

    assert isinstance(opts, HttpOptions)
    host = f"[{opts.host}]" if ":" in opts.host else opts.host
    if opts.host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    base = f"http://{host}:{opts.port}"
    lines = ["Corral MCP server"]
    if "http" in opts.transports:
        lines.append(f"  Streamable HTTP: {base}/mcp")
    if "sse" in opts.transports:
        lines.append(f"  SSE:             {base}/sse")
    entry: dict[str, object] = {
        "type": "http",
        "url": f"{base}/mcp" if "http" in opts.transports else f"{base}/sse",
    }
    if opts.token:
        entry["headers"] = {"Authorization": "Bearer ${CORRAL_TOKEN}"}
    lines.append("  Config for .mcp.json (Claude Code) or any MCP client:")
    lines.append(json.dumps({"mcpServers": {"corral": entry}}, indent=2))
    print("\n".join(lines), file=sys.stderr, flush=True)


def cmd_image(args: argparse.Namespace) -> int:
    from corral.sandbox_backend.docker_engine import DockerEngine

    name = args.name or DEFAULT_IMAGE

    async def exists() -> bool:
        engine = DockerEngine()
        try:
            return await engine.image_exists(name)
        finally:
            await engine.close()

    present = anyio.run(exists)
    if args.action == "status":
        print(f"{name}: {'present' if present else 'missing (run: corral image build)'}")
        return 0 if present else 1
    if present and not args.force:
        print(f"{name} is already built (use --force to rebuild)", file=sys.stderr)
        return 0
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from corral.sandbox_backend.image import build_image

    with Progress(
        TextColumn("[bold]{task.description:<50}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        transient=False,
    ) as progress:
        task = progress.add_task(f"building {name}", total=1.0)

        def report(stage: str, fraction: float) -> None:
            progress.update(task, completed=fraction, description=stage[:50])

        build_image(name, progress=report)
    print(f"built {name}", file=sys.stderr)
    return 0


def cmd_gc(args: argparse.Namespace) -> int:
    from corral.service import SandboxService

    _log_to_stderr("WARNING")

    async def run() -> list[str]:
        async with SandboxService.open(_settings(args)) as service:
            if args.dry_run:
                return (await service.reconcile())["orphans"]
            return await service.gc()

    names = anyio.run(run)
    verb = "would remove" if args.dry_run else "removed"
    print(f"{verb} {len(names)} orphaned container(s)" + (": " + ", ".join(names) if names else ""))
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from corral.config import RUNTIME_GVISOR, RUNTIME_GVISOR_NET
    from corral.sandbox_backend.docker_engine import DockerEngine

    settings = _settings(args)

    async def check() -> dict[str, object]:
        engine = DockerEngine()
        try:
            runtimes = await engine.runtimes()
            return {
                "docker": "ok",
                "gvisor_runtime": RUNTIME_GVISOR in runtimes,
                "gvisor_net_runtime": RUNTIME_GVISOR_NET in runtimes,
                "image": settings.image,
                "image_present": await engine.image_exists(settings.image),
                "home": str(settings.home),
            }
        finally:
            await engine.close()

    report = anyio.run(check)
    print(json.dumps(report, indent=2))
    return 0 if report["gvisor_runtime"] and report["image_present"] else 1


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="corral", description="MCP server giving AI agents gVisor sandboxes.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the MCP server (stdio by default)")
    s.add_argument("--transport", default="stdio", help="stdio (default), http, sse, or sse,http")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8765)
    s.add_argument("--token", help="bearer token clients must send (default: $CORRAL_TOKEN)")
    s.add_argument(
        "--insecure-no-auth", action="store_true", help="allow a non-loopback bind without a token"
    )
    s.add_argument("--allowed-host", action="append", help="extra Host header value to accept (repeatable)")
    s.add_argument("--tools", default="all", help="tool groups to serve, e.g. core,files (default: all)")
    s.add_argument("--image", help=f"default sandbox image (default: $CORRAL_IMAGE or {DEFAULT_IMAGE})")
    s.add_argument(
        "--unsafe-runc-no-gvisor",
        action="store_true",
        help="DANGEROUS: run sandboxes under runc, sharing the host kernel",
    )
    s.add_argument(
        "--allow-host-dir",
        action="append",
        metavar="DIR",
        help="host directory upload/download may use (repeatable; also $CORRAL_HOST_DIRS, colon-separated)",
    )
    s.add_argument("--log-level", default="INFO")
    s.set_defaults(func=cmd_serve)

    i = sub.add_parser("image", help="build or check the default sandbox image")
    i.add_argument("action", choices=["build", "status"])
    i.add_argument("--name", help=f"image name (default {DEFAULT_IMAGE})")
    i.add_argument("--force", action="store_true", help="rebuild even if present")
    i.set_defaults(func=cmd_image)

    g = sub.add_parser("gc", help="remove containers labelled by this data dir that have no sandbox record")
    g.add_argument("--dry-run", action="store_true")
    g.set_defaults(func=cmd_gc)

    d = sub.add_parser("doctor", help="check Docker, gVisor and the image")
    d.set_defaults(func=cmd_doctor)
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
