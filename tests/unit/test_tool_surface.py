"""The tool surface is a budget: what tools/list costs a model's context, measured and pinned.

The figure is the length of the tools/list result as JSON (json.dumps with its default
separators, as the issue measured 64,218 characters for 36 tools before the schemas were trimmed).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.types import ListToolsResult, TextContent

from corral.config import Settings
from corral.sandbox_backend.fake import FakeEngine
from corral.server import build_server
from corral.tools import GROUPS, build_tools
from tests.helpers import call_ok, text_of

ALL_TOOLS_BUDGET = 32_000
CORE_INTERPRETER_FILES_BUDGET = 16_000
PER_TOOL_BUDGET = 1_200


async def tools_list(settings: Settings, groups: tuple[str, ...] = tuple(GROUPS)) -> list[dict[str, Any]]:
    server = build_server(settings, groups=groups, engine=FakeEngine())
    result = ListToolsResult(tools=await server.list_tools())
    return json.loads(result.model_dump_json(by_alias=True, exclude_none=True))["tools"]


def size(tools: list[dict[str, Any]]) -> int:
    return len(json.dumps({"tools": tools}))


def walk(node: Any) -> Any:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


async def test_tools_list_stays_within_its_budget(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    everything = await tools_list(settings)
    subset = await tools_list(settings, ("core", "interpreter", "files"))
    biggest = sorted(((len(json.dumps(t)), t["name"]) for t in everything), reverse=True)[:5]
    print(
        f"\ntools/list: all {len(everything)} tools {size(everything)} characters (budget {ALL_TOOLS_BUDGET}); "
        f"core,interpreter,files {len(subset)} tools {size(subset)} (budget {CORE_INTERPRETER_FILES_BUDGET}); "
        f"largest: {', '.join(f'{name} {n}' for n, name in biggest)}"
    )
    assert size(everything) <= ALL_TOOLS_BUDGET
    assert size(subset) <= CORE_INTERPRETER_FILES_BUDGET
    assert biggest[0][0] <= PER_TOOL_BUDGET, biggest[0]


async def test_schemas_carry_no_generated_noise(tmp_path: Path) -> None:
    for tool in await tools_list(Settings(home=tmp_path)):
        schema = tool["inputSchema"]
        for node in walk(schema):
            if isinstance(node, dict):
                assert "title" not in node or not isinstance(node["title"], str), tool["name"]
                assert {"type": "null"} not in node.get("anyOf", []), tool["name"]
                assert not ("default" in node and node["default"] is None), tool["name"]
        properties = schema.get("properties", {})
        assert set(schema.get("required", [])) <= set(properties), tool["name"]
        if "sandbox" in properties and "sandbox" in schema.get("required", []):
            assert properties["sandbox"] == {"type": "string"}, tool["name"]  # said once, in the instructions
        assert "\n" not in tool["description"] and len(tool["description"]) <= 260, tool["name"]
        assert "outputSchema" not in tool, tool["name"]  # published only when asked for


def test_optional_arguments_stay_optional_and_required_ones_required() -> None:
    tool = next(t for t in build_tools() if t.name == "read_file")
    assert tool.parameters["required"] == ["sandbox", "path"]
    assert tool.parameters["properties"]["start_line"] == {
        "type": "integer",
        "description": "1-based; negative counts from the end.",
    }
    args = tool.fn_metadata.validate_arguments({"sandbox": "s", "path": "p", "start_line": None})
    assert args["start_line"] is None  # a client may still send null for an optional argument


def test_aliases_are_known_arguments_and_not_in_the_schema() -> None:
    tool = next(t for t in build_tools() if t.name == "edit_file")
    assert "old_string" not in tool.parameters["properties"]
    assert tool.fn_metadata.arg_model.accepted_aliases == {"old_string": "old_text", "new_string": "new_text"}  # type: ignore[attr-defined]
    args = tool.fn_metadata.validate_arguments({"sandbox": "s", "path": "p", "old_string": "a", "new_string": "b"})
    assert (args["old_text"], args["new_text"]) == ("a", "b")
    with pytest.raises(ValueError, match="old_text or old_string"):
        tool.fn_metadata.validate_arguments({"sandbox": "s", "path": "p", "old_text": "a", "old_string": "a",
                                             "new_text": "b"})


async def test_published_output_schemas_validate_real_results(tmp_path: Path) -> None:
    """With CORRAL_OUTPUT_SCHEMAS the lean output schemas are published, and the MCP client checks
    every structured result against them (nullable fields included)."""
    engine = FakeEngine()
    engine.agent_ops["read_lines"] = lambda p: {
        "binary": False, "size": 4, "bytes": b"hi\n", "first_line": 1, "last_line": 1, "total_lines": 1,
        "truncated": False, "line_cut": False,
    }
    engine.agent_ops["stat"] = lambda p: {"exists": False, "type": None, "size": None, "mtime": None, "mode": None}
    settings = Settings(home=tmp_path, output_schemas=True)
    async with Client(build_server(settings, engine=engine), raise_exceptions=False) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert all(t.output_schema for t in tools.values())
        schema = tools["get_sandbox"].output_schema
        assert schema is not None and schema["properties"]["name"] == {"type": ["string", "null"]}
        created = await call_ok(client, "create_sandbox", name="typed")
        assert created["name"] == "typed"
        await call_ok(client, "list_sandboxes")
        read = await call_ok(client, "read_file", sandbox="typed", path="a.txt")
        assert read["content"] == "     1\thi\n" and read["mime_type"] is None
        info = await call_ok(client, "get_file_info", sandbox="typed", path="nope")
        assert info["exists"] is False and info["size"] is None
        result = await client.call_tool("read_file", {"sandbox": "typed", "path": "a.txt"})
        assert text_of(result).startswith("/workspace/a.txt: lines 1-1 of 1\n     1\thi\n")
        # Every result that touches a sandbox also says its lease, in a text block of its own.
        [_, notes] = result.content
        assert isinstance(notes, TextContent) and notes.text.startswith("lease: stops_at=")
