"""`corral serve`: the MCP server over stdio, or Streamable HTTP and SSE."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any

from corral.cli._common import log_to_stderr, settings_from
from corral.config import DEFAULT_IMAGE


def add_parser(sub: Any) -> None:
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
        "--unsafe-no-disk-limit",
        action="store_true",
        help="DANGEROUS: where disk limits cannot be enforced (not root, no loop devices), run sandboxes "
        "whose files can fill the host's disk",
    )
    s.add_argument(
        "--allow-host-dir",
        action="append",
        metavar="DIR",
        help="host directory upload/download may use (repeatable; also $CORRAL_HOST_DIRS, colon-separated)",
    )
    s.add_argument("--max-connections", type=int, default=256, help="open HTTP connections at once (default 256)")
    s.add_argument(
        "--max-sessions-per-client", type=int, default=64,
        help="MCP sessions one tenant may hold; its oldest idle one is closed for a new one (default 64)",
    )
    s.add_argument("--session-idle", type=float, default=600.0, help="seconds before an idle MCP session ends")
    s.add_argument(
        "--header-timeout", type=float, default=10.0, help="seconds a client has to send a request's headers"
    )
    s.add_argument("--log-level", default="INFO")
    s.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from corral.server.app import build_server
    from corral.server.http import HttpOptions, build_http_app
    from corral.tools import parse_groups

    log_to_stderr(args.log_level)
    settings = settings_from(args)
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
    if settings.unsafe_no_disk_limit:
        logging.getLogger("corral").warning(
            "UNSAFE: --unsafe-no-disk-limit: new sandboxes have no disk limit and can fill the host's disk"
        )
    if transports == ("stdio",):
        build_server(settings, groups=groups).run("stdio")
        return 0

    import anyio
    import uvicorn

    from corral.server.http import check_auth_policy
    from corral.server.protocol import ConnectionLimits, protocol_class

    opts = HttpOptions(
        host=args.host,
        port=args.port,
        token=args.token or os.environ.get("CORRAL_TOKEN") or None,
        insecure_no_auth=args.insecure_no_auth,
        transports=transports,
        allowed_hosts=tuple(args.allowed_host or ()),
        connections=ConnectionLimits(max_connections=args.max_connections, header_timeout=args.header_timeout),
        sessions_per_client=args.max_sessions_per_client,
        session_idle_timeout=args.session_idle,
    )
    tokens_exist = anyio.run(_tokens_exist, settings)
    check_auth_policy(opts, settings, tokens_exist)
    app, _ = build_http_app(settings, opts, groups)
    _print_banner(opts, tenant_tokens=tokens_exist or settings.oauth.enabled)
    uvicorn.run(
        app,
        host=opts.host,
        port=opts.port,
        log_level=args.log_level.lower(),
        lifespan="on",
        http=protocol_class(opts.connections),
        timeout_keep_alive=5,
    )
    return 0


async def _tokens_exist(settings: object) -> bool:
    from corral.config import Settings
    from corral.sandbox_backend.store import Store

    assert isinstance(settings, Settings)
    store = await Store.open(settings.db_path)  # the server is about to migrate it anyway
    try:
        return await store.tokens.any()
    finally:
        await store.close()


def _print_banner(opts: object, *, tenant_tokens: bool) -> None:
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
    elif tenant_tokens:
        entry["headers"] = {"Authorization": "Bearer <a token from corral token create>"}
    lines.append("  Config for .mcp.json (Claude Code) or any MCP client:")
    lines.append(json.dumps({"mcpServers": {"corral": entry}}, indent=2))
    print("\n".join(lines), file=sys.stderr, flush=True)
