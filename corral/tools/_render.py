"""The text a model reads from a tool result: a compact summary next to the full structured content.

A result's `structuredContent` has every field (for programs); its text is written for a model:
`key: value` lines, multi-line values (output, file text) as blocks, list items one per line,
empty values and values at their default left out. A result type can register its own renderer (`renders`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)

_RENDERERS: dict[type[BaseModel], Callable[[Any], str]] = {}
MAX_ITEMS = 500  # list items shown in the text; structuredContent has them all


def renders(model: type[M]) -> Callable[[Callable[[M], str]], Callable[[M], str]]:
    """Register the text renderer of one result type."""

    def register(fn: Callable[[M], str]) -> Callable[[M], str]:
        _RENDERERS[model] = fn
        return fn

    return register


def render(result: BaseModel) -> str:
    for cls in type(result).__mro__:
        if cls in _RENDERERS:
            return _RENDERERS[cls](result)
    # Fields at their default (no output dropped, not timed out, ...) say nothing worth reading.
    return render_fields(result.model_dump(mode="json", exclude_defaults=True))


def render_fields(data: dict[str, Any]) -> str:
    lines: list[str] = []
    blocks: list[str] = []
    for key, value in data.items():
        if value is None or value == "" or value == [] or value == {}:
            continue
        if isinstance(value, str) and "\n" in value:
            blocks.append(f"{key}:\n{value.rstrip()}")
        elif isinstance(value, list):
            lines.append(f"{key}: {len(value)}")
            lines += [f"- {_inline(item)}" for item in value[:MAX_ITEMS]]
            if len(value) > MAX_ITEMS:
                lines.append(f"- ... {len(value) - MAX_ITEMS} more")
        else:
            lines.append(f"{key}: {_inline(value)}")
    return "\n".join(lines + blocks)


def _inline(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={_scalar(v)}" for k, v in value.items() if v not in (None, "", [], {}))
    return _scalar(value)


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if value and "\n" not in value and len(value) <= 300 else json.dumps(value[:2000])
    if isinstance(value, float):
        return str(round(value, 3))
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"))[:2000]
    return str(value)
