"""The MCP tools, in groups an operator can switch on and off (`corral serve --tools core,files`).

Each group is one module exporting `TOOLS`; `build_tools` wraps every tool in `audited` (audit record,
errors for the model) and makes it a `StrictTool` (exact argument names and types) for the server.
"""

from __future__ import annotations

from mcp.server.mcpserver.tools.base import Tool

from corral.errors import InvalidRequest
from corral.tools import core, files, git, interpreter, lifecycle, processes
from corral.tools._base import ToolSpec, audited
from corral.tools._strict import StrictTool

GROUPS: dict[str, list[ToolSpec]] = {
    "core": core.TOOLS,
    "lifecycle": lifecycle.TOOLS,
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


def build_tools(groups: tuple[str, ...] = DEFAULT_GROUPS) -> list[Tool]:
    return [
        StrictTool.from_function(
            audited(spec.fn), title=spec.title, annotations=spec.annotations, structured_output=True
        )
        for group in groups
        for spec in GROUPS[group]
    ]
