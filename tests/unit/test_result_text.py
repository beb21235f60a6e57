"""What a model reads from a result: compact text, not a JSON dump."""

from __future__ import annotations

from corral.service.files.content import number_lines
from corral.service.files.sniff import sniff
from corral.service.models import ExecResult
from corral.tools._render import render, render_fields
from corral.tools._schema import lean_output_schema, lean_schema


def test_a_command_result_reads_like_a_terminal() -> None:
    result = ExecResult.model_validate(
        {"exit_code": 0, "stdout": "hello\nworld\n", "stderr": "", "timed_out": False, "duration_ms": 12.3456}
    )
    assert render(result) == "exit_code: 0\ntimed_out: false\nduration_ms: 12.346\nstdout:\nhello\nworld"


def test_lists_are_one_line_per_item_and_empty_values_are_left_out() -> None:
    text = render_fields({"entries": [{"path": "a", "size": 1, "note": None}], "cursor": None, "more": False})
    assert text == "entries: 1\n- path=a, size=1\nmore: false"


def test_lines_are_numbered_like_cat_n() -> None:
    assert number_lines("a\r\nb\n", 9) == "     9\ta\n    10\tb\n"
    assert number_lines("no newline", 1) == "     1\tno newline\n"


def test_binary_types_are_named_from_their_magic_bytes() -> None:
    assert sniff(b"\x1f\x8b\x08\x00") == "application/gzip"
    assert sniff(b"\x7fELF\x02\x01") == "application/x-elf"
    assert sniff(b"\x00" * 257 + b"ustar\x00") == "application/x-tar"
    assert sniff(b"\x00\x01\x02") == "application/octet-stream"


def test_lean_schemas_keep_null_for_outputs_and_drop_it_for_optional_inputs() -> None:
    generated = {
        "title": "Args",
        "type": "object",
        "properties": {
            "name": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None, "title": "Name"},
            "title": {"type": "string", "title": "Title"},  # a property may be called title
        },
        "required": ["title"],
    }
    assert lean_schema(generated) == {
        "type": "object",
        "properties": {"name": {"type": "string"}, "title": {"type": "string"}},
        "required": ["title"],
    }
    assert lean_output_schema(generated)["properties"]["name"] == {"type": ["string", "null"]}
