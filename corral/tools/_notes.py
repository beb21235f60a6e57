"""Adding the call's notes (service/notes.py) to a tool's result: what the model should know
whatever the tool was: a sandbox it used was resumed, its lease, a lifetime about to end.

They go into the structured content (`lease`, `leases`, `notices`) and, as `key: value` lines
(tools/_render.py), into a text block of their own after the result's: never into its text, which
may be a file's content."""

from __future__ import annotations

from typing import Any

from mcp.types import CallToolResult, ContentBlock, TextContent
from pydantic import BaseModel

from corral.service.notes import CallNotes
from corral.tools._render import render, render_fields


def annotate(result: Any, notes: CallNotes) -> Any:
    extra: dict[str, Any] = {}
    if len(notes.leases) == 1:
        extra["lease"] = next(iter(notes.leases.values()))
    elif notes.leases:
        extra["leases"] = dict(notes.leases)
    if notes.notices:
        extra["notices"] = list(notes.notices)
    if not extra:
        return result
    if isinstance(result, CallToolResult):
        structured = dict(result.structured_content or {})
        content = list(result.content)
    elif isinstance(result, BaseModel):
        structured = result.model_dump(mode="json")
        content = [TextContent(type="text", text=render(result))]
    else:
        return result
    added = {key: value for key, value in extra.items() if structured.get(key) is None}
    structured.update(added)
    # A result that shows its own lease keeps it; a lease of null says so as `lease: none`.
    text = render_fields({k: ("none" if v is None else v) for k, v in added.items()})
    blocks: list[ContentBlock] = content
    last_text = max((i for i, block in enumerate(blocks) if isinstance(block, TextContent)), default=-1)
    blocks.insert(last_text + 1, TextContent(type="text", text=text))
    return CallToolResult(content=blocks, structured_content=structured, is_error=result_is_error(result))


def result_is_error(result: Any) -> bool:
    return bool(getattr(result, "is_error", False))
