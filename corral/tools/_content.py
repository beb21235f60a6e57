"""Shaping results that carry images: structured content plus MCP image blocks."""

from __future__ import annotations

import pybase64
from mcp.types import CallToolResult, ContentBlock, ImageContent, TextContent
from pydantic import BaseModel

from corral.tools._render import render


def with_images(result: BaseModel, images: list[tuple[bytes, str]]) -> CallToolResult:
    content: list[ContentBlock] = [TextContent(type="text", text=render(result))]
    content += [
        ImageContent(type="image", data=pybase64.b64encode_as_string(data), mime_type=mime)
        for data, mime in images
    ]
    return CallToolResult(content=content, structured_content=result.model_dump(mode="json"))
