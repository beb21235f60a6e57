"""Lean tool schemas: what pydantic generates, without what costs a model's context and says nothing.

Removed: the auto-generated `title` of every schema and property (the property name says it),
`default: null`, and the `anyOf: [T, null]` pydantic writes for an optional argument, which becomes
plain `T` (the argument is optional because it is not `required`; a client may still send null).
Output schemas keep null as a possible value, as `type: [T, "null"]`, so clients that validate
results against them still accept what the tools return.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SUBSCHEMA_VALUES = ("items", "additionalProperties", "not")
_SUBSCHEMA_MAPS = ("properties", "$defs", "patternProperties")


def lean_schema(schema: dict[str, Any], *, output: bool = False) -> dict[str, Any]:
    """A copy of `schema` without titles and null noise (see the module docstring)."""
    return _clean(schema, output)


def _clean(node: Any, output: bool) -> Any:
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "title":
            continue
        if key in _SUBSCHEMA_MAPS and isinstance(value, dict):
            out[key] = {name: _clean(sub, output) for name, sub in value.items()}
        elif key in _SUBSCHEMA_LISTS and isinstance(value, list):
            out[key] = [_clean(sub, output) for sub in value]
        elif key in _SUBSCHEMA_VALUES:
            out[key] = _clean(value, output)
        else:
            out[key] = value
    return _collapse_nullable(out, output)


def _collapse_nullable(node: dict[str, Any], output: bool) -> dict[str, Any]:
    options = node.get("anyOf")
    if not isinstance(options, list) or {"type": "null"} not in options or len(options) != 2:
        if node.get("default", 0) is None and not output:
            node.pop("default")
        return node
    other = next(o for o in options if o != {"type": "null"})
    merged = {k: v for k, v in node.items() if k != "anyOf"}
    if not output:
        if merged.get("default", 0) is None:
            merged.pop("default")
        return {**other, **merged}
    merged.pop("default", None)
    kind = other.get("type")
    if isinstance(kind, str) and set(other) <= {"type", "format"}:
        return {**other, "type": [kind, "null"], **merged}
    return {**merged, "anyOf": options}


def lean_output_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Output schemas: as `lean_schema`, and without defaults or descriptions (results are read by
    programs; the result text carries the explanations a model needs)."""
    return _strip(lean_schema(schema, output=True), ("default", "description"))


def _strip(node: Any, keys: tuple[str, ...]) -> Any:
    if isinstance(node, list):
        return [_strip(item, keys) for item in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key in keys and not isinstance(value, dict):
            continue
        if key in _SUBSCHEMA_MAPS and isinstance(value, dict):
            out[key] = {name: _strip(sub, keys) for name, sub in value.items()}
        else:
            out[key] = _strip(value, keys)
    return out


def tool_description(doc: str | None) -> str:
    """A docstring as one compact paragraph (docstring indentation and line breaks cost tokens)."""
    return re.sub(r"\s+", " ", inspect.cleandoc(doc or "")).strip()
