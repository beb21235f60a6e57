"""Strict tool arguments, for every tool in one place.

The SDK validates arguments in pydantic's lax mode and ignores names it does not know: `true`
becomes port 1, "5" becomes 5, and `create_sandbox(disk_gb=5)` silently makes a default sandbox.
`StrictTool` checks first, against the same signature in strict mode with no extra names, and
answers with an error that names the argument, the type it needs (never the value, which may be
a secret) and, for unknown names, the valid ones.
"""

from __future__ import annotations

import functools
import types
from typing import Any, Literal, Union, get_args, get_origin

from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools.base import Tool
from mcp.server.mcpserver.utilities.func_metadata import FuncMetadata
from pydantic import BaseModel, ConfigDict, ValidationError

_NEEDS = {
    "int_type": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "finite_number": "a finite number",
    "string_type": "a string",
    "bool_type": "true or false",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
    "list_type": "an array",
    "none_required": "null",
}


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


@functools.cache
def strict_model(model: type[BaseModel]) -> type[BaseModel]:
    """The tool's argument model in strict mode, refusing unknown names and NaN/infinity."""

    class Strict(model):  # type: ignore[valid-type, misc]
        model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False, arbitrary_types_allowed=True)

    Strict.__name__ = model.__name__
    return Strict


def _problem(error: Any) -> str:
    path = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"]).lstrip(".")
    kind = error["type"]
    if kind == "missing":
        return f"'{path}' is required"
    if kind == "extra_forbidden":
        return f"'{path}' is not a field it accepts"
    if kind in _NEEDS:
        return f"'{path}' must be {_NEEDS[kind]} (got {_json_type(error.get('input'))})"
    return f"'{path}': {error['msg']}"


def check_arguments(tool: Tool, arguments: dict[str, Any]) -> None:
    """Raise ToolError unless `arguments` fit the tool's signature exactly."""
    model = tool.fn_metadata.arg_model
    valid = [field.alias or name for name, field in model.model_fields.items()]
    valid += list(getattr(model, "accepted_aliases", {}))  # other spellings the model renames
    unknown = sorted(str(k) for k in arguments if k not in valid)
    if unknown:
        names = ", ".join(repr(k[:60]) for k in unknown[:10])
        accepted = f"valid arguments: {', '.join(valid)}" if valid else "it takes no arguments"
        raise ToolError(f"{tool.name}: unknown argument(s) {names}; {accepted}")
    try:
        strict_model(model).model_validate(tool.fn_metadata.pre_parse_json(arguments))
    except ValidationError as exc:
        problems = list(dict.fromkeys(_problem(e) for e in exc.errors(include_url=False)))
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise ToolError(f"{tool.name}: invalid arguments: {'; '.join(problems[:3])}{more}") from None


def _takes_text(annotation: Any) -> bool:
    origin = get_origin(annotation)
    if annotation is str:
        return True
    if origin in (Union, types.UnionType):
        return any(_takes_text(a) for a in get_args(annotation))
    if origin is Literal:
        return any(isinstance(a, str) for a in get_args(annotation))
    return False


class _KeepText(FuncMetadata):
    def pre_parse_json(self, data: dict[str, Any]) -> dict[str, Any]:
        fields = self.arg_model.model_fields
        text = {(f.alias or n) for n, f in fields.items() if _takes_text(f.annotation)}
        parsed = super().pre_parse_json({k: v for k, v in data.items() if k not in text})
        return {k: data[k] if k in text else parsed[k] for k in data}


class StrictTool(Tool):
    @classmethod
    def from_function(cls, fn: Any, *args: Any, **kwargs: Any) -> StrictTool:
        tool = super().from_function(fn, *args, **kwargs)
        meta = tool.fn_metadata
        tool.fn_metadata = _KeepText(
            arg_model=meta.arg_model,
            output_schema=meta.output_schema,
            output_model=meta.output_model,
            wrap_output=meta.wrap_output,
        )
        assert isinstance(tool, StrictTool)
        return tool

    async def run(self, arguments: dict[str, Any], context: Any, convert_result: bool = False) -> Any:
        check_arguments(self, arguments)
        return await super().run(arguments, context, convert_result=convert_result)
