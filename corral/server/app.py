"""Builds the MCPServer: the lifespan that opens Corral's resources, and the tools."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from mcp.server.mcpserver import MCPServer

from corral import __version__
from corral.config import Settings
from corral.sandbox_backend.engine import Engine
from corral.service import Services, open_services
from corral.tools import DEFAULT_GROUPS, build_tools

INSTRUCTIONS = """\
Corral gives you Linux sandboxes (gVisor containers) to run code in.
Typical flow: create_sandbox once, then run_code / run_command / read_file / write_file with its id,
and delete_sandbox when done. Sandboxes and interpreter state persist across calls; there is no
network access by default. Paths are relative to /workspace."""


@dataclass
class ServiceHolder:
    """A service opened by the HTTP app's own lifespan and shared by every MCP session.

    SSE runs the MCP lifespan once per connection; holding the services outside lets all
    connections share one SQLite connection, one Docker client and the agent channels.
    """

    services: Services | None = None


def build_server(
    settings: Settings,
    *,
    groups: tuple[str, ...] = DEFAULT_GROUPS,
    holder: ServiceHolder | None = None,
    engine: Engine | None = None,
) -> MCPServer[Services]:
    @asynccontextmanager
    async def lifespan(_: MCPServer[Services]) -> AsyncIterator[Services]:
        if holder is not None and holder.services is not None:
            yield holder.services
            return
        async with open_services(settings, engine=engine) as services:
            yield services

    server: MCPServer[Services] = MCPServer(
        "corral",
        title="Corral sandboxes",
        version=__version__,
        instructions=INSTRUCTIONS,
        lifespan=lifespan,
        log_level="WARNING",
        tools=build_tools(groups, output_schemas=settings.output_schemas),
    )
    return server
