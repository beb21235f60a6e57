"""Adding the call's notes (service/notes.py) to a tool's result: what the model should know
whatever the tool was: a sandbox it used was resumed, its lease, a lifetime about to end."""

from __future__ import annotations

import json
from typing import Any

from mcp.types import CallToolResult, ContentBlock, TextContent
from pydantic import BaseModel

from corral.service.notes import CallNotes


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
        rest = [block for block in result.content if not isinstance(block, TextContent)]
    elif isinstance(result, BaseModel):
        structured = result.model_dump(mode="json")
        rest = []
    else:
        return result
    for key, value in extra.items():
        if structured.get(key) is None:  # a result that shows its own lease keeps it
            structured[key] = value
    content: list[ContentBlock] = [TextContent(type="text", text=json.dumps(structured, indent=2)), *rest]
    return CallToolResult(content=content, structured_content=structured, is_error=getattr(result, "is_error", False))
