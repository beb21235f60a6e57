"""Shaping results that carry images: structured content plus MCP image blocks."""

from __future__ import annotations

import base64

from mcp.types import CallToolResult, ContentBlock, ImageContent, TextContent
from pydantic import BaseModel


def with_images(result: BaseModel, images: list[tuple[bytes, str]]) -> CallToolResult:
    content: list[ContentBlock] = [TextContent(type="text", text=result.model_dump_json())]
    content += [
        ImageContent(type="image", data=base64.b64encode(data).decode(), mime_type=mime)
        for data, mime in images
    ]
    return CallToolResult(content=content, structured_content=result.model_dump(mode="json"))
