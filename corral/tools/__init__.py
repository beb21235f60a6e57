"""The MCP tools, in groups an operator can switch on and off (`corral serve --tools core,files`).

Each group is one module exporting `TOOLS`; `register` wraps every tool in `audited` (audit record,
errors for the model) and adds it to the server.
"""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import MCPServer

from corral.errors import InvalidRequest
from corral.tools import core, files, git, interpreter, processes
from corral.tools._base import ToolSpec, audited

GROUPS: dict[str, list[ToolSpec]] = {
    "core": core.TOOLS,
    "interpreter": interpreter.TOOLS,
    "files": files.TOOLS,
    "processes": processes.TOOLS,
    "git": git.TOOLS,
}
DEFAULT_GROUPS: tuple[str, ...] = tuple(GROUPS)


def parse_groups(spec: str | None) -> tuple[str, ...]:
    if not spec or spec.strip() == "all":
        return DEFAULT_GROUPS
    groups = tuple(g.strip() for g in spec.split(",") if g.strip())
    unknown = [g for g in groups if g not in GROUPS]
    if unknown or not groups:
        raise InvalidRequest(
            f"unknown tool group(s) {', '.join(unknown) or spec!r}; choose from: "
            f"{', '.join(GROUPS)} (or 'all')"
        )
    return groups


def register(server: MCPServer[Any], groups: tuple[str, ...] = DEFAULT_GROUPS) -> None:
    for group in groups:
        for spec in GROUPS[group]:
            server.add_tool(
                audited(spec.fn, executes=spec.executes),
                title=spec.title,
                annotations=spec.annotations,
                structured_output=True,
            )
