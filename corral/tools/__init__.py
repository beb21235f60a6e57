"""The MCP tools, in groups an operator can switch on and off (`corral serve --tools core,files`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations

from corral.errors import InvalidRequest
from corral.tools import execution, files, sandboxes


@dataclass(frozen=True)
class ToolSpec:
    fn: Callable[..., Any]
    title: str
    read_only: bool = False
    destructive: bool = False
    idempotent: bool = False
    open_world: bool = False  # reaches beyond the sandbox (e.g. a git remote)

    @property
    def annotations(self) -> ToolAnnotations:
        return ToolAnnotations(
            title=self.title,
            read_only_hint=self.read_only,
            destructive_hint=self.destructive,
            idempotent_hint=self.idempotent,
            # Sandboxes have no network by default: most tools' effects stay inside them.
            open_world_hint=self.open_world,
        )


# These modules build their ToolSpec lists at import, so they come after ToolSpec is defined.
from corral.tools.fileops import FILE_TOOLS  # noqa: E402
from corral.tools.git import GIT_TOOLS  # noqa: E402
from corral.tools.processes import PROCESS_TOOLS  # noqa: E402

GROUPS: dict[str, list[ToolSpec]] = {
    "core": [
        ToolSpec(sandboxes.create_sandbox, "Create sandbox"),
        ToolSpec(sandboxes.list_sandboxes, "List sandboxes", read_only=True, idempotent=True),
        ToolSpec(sandboxes.get_sandbox, "Get sandbox", read_only=True, idempotent=True),
        ToolSpec(sandboxes.delete_sandbox, "Delete sandbox", destructive=True, idempotent=True),
        ToolSpec(execution.run_command, "Run shell command", destructive=True),
    ],
    "interpreter": [
        ToolSpec(execution.run_code, "Run code", destructive=True),
        ToolSpec(execution.list_contexts, "List interpreter contexts", read_only=True, idempotent=True),
        ToolSpec(execution.restart_context, "Restart interpreter context", destructive=True, idempotent=True),
        ToolSpec(execution.interrupt_context, "Interrupt interpreter context", idempotent=True),
    ],
    "files": [
        ToolSpec(files.read_file, "Read file", read_only=True, idempotent=True),
        ToolSpec(files.write_file, "Write file", destructive=True, idempotent=True),
        ToolSpec(files.list_files, "List files", read_only=True, idempotent=True),
        *FILE_TOOLS,
    ],
    "processes": PROCESS_TOOLS,
    "git": GIT_TOOLS,
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
            server.add_tool(spec.fn, title=spec.title, annotations=spec.annotations, structured_output=True)
