"""The MCP tools, in groups an operator can switch on and off (`corral serve --tools core,files`).

Each group is one module exporting `TOOLS`; `build_tools` wraps every tool in `audited` (audit
record, errors for the model) and `shaped` (a compact text summary next to the structured result),
makes it a `StrictTool` (exact argument names and types, `_strict.py`), trims its schemas
(`_schema.py`) and gives the server the list.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from mcp.server.mcpserver.tools import Tool
from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase
from mcp.types import CallToolResult, TextContent
from pydantic import BaseModel, create_model, model_validator

from corral.errors import InvalidRequest
from corral.tools import core, files, git, interpreter, lifecycle, processes
from corral.tools._base import ToolSpec, audited
from corral.tools._render import render
from corral.tools._schema import lean_output_schema, lean_schema, tool_description
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


def build_tools(groups: tuple[str, ...] = DEFAULT_GROUPS, *, output_schemas: bool = False) -> list[Tool]:
    return [build_tool(spec, output_schema=output_schemas) for group in groups for spec in GROUPS[group]]


def build_tool(spec: ToolSpec, *, output_schema: bool = False) -> Tool:
    """The tool for `spec`. Its output schema is published only with `output_schema` (it would
    double what tools/list costs a model); results carry structuredContent either way."""
    tool = StrictTool.from_function(
        shaped(audited(spec.fn, executes=spec.executes)),
        title=spec.title,
        description=tool_description(spec.fn.__doc__),
        annotations=spec.annotations,
        structured_output=True,
    )
    tool.parameters = lean_schema(tool.parameters)
    meta = tool.fn_metadata
    if meta.output_schema is not None:
        meta.output_schema = lean_output_schema(meta.output_schema) if output_schema else None
    if spec.aliases:
        meta.arg_model = _accepting(meta.arg_model, spec.aliases)
    return tool


def shaped(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Results as a compact text for the model plus the full structured content for programs."""

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = await fn(*args, **kwargs)
        if isinstance(result, BaseModel) and not isinstance(result, CallToolResult):
            return CallToolResult(
                content=[TextContent(type="text", text=render(result))],
                structured_content=result.model_dump(mode="json"),
            )
        return result

    return wrapper


def _accepting(model: type[ArgModelBase], aliases: Mapping[str, str]) -> type[ArgModelBase]:
    """The argument model, also accepting each alias in place of its parameter."""

    def rename(data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for alias, name in aliases.items():
            if alias in data:
                if name in data:
                    raise ValueError(f"give {name} or {alias} (the same argument), not both")
                data[name] = data.pop(alias)
        return data

    validator = model_validator(mode="before")(classmethod(lambda cls, data: rename(data)))  # type: ignore[arg-type]
    validators: dict[str, Any] = {"accept_aliases": validator}
    accepting = create_model(model.__name__, __base__=model, __validators__=validators)
    # For checks of argument names made before validation (unknown names are refused): these are known.
    accepting.accepted_aliases = dict(aliases)  # type: ignore[attr-defined]
    return accepting
