"""Input validation: every bad input gets a message saying what is valid."""

from __future__ import annotations

import pytest

from corral.errors import InvalidRequest, PayloadTooLarge
from corral.service import validation as v
from corral.tools import parse_groups


@pytest.mark.parametrize("name", ["", "UPPER", "-dash", "a" * 64, "sb-0123abcd", "has space", "a/b"])
def test_bad_sandbox_names_are_rejected_with_the_rule(name: str) -> None:
    with pytest.raises(InvalidRequest, match="use 1-63 characters"):
        v.check_name(name)


@pytest.mark.parametrize("name", ["dev", "my-box_1.2", "0abc"])
def test_good_sandbox_names_pass(name: str) -> None:
    assert v.check_name(name) == name


def test_relative_paths_resolve_under_workspace() -> None:
    assert v.check_path("src/app.py") == "/workspace/src/app.py"
    assert v.check_path("/etc/hostname") == "/etc/hostname"


@pytest.mark.parametrize("path", ["", "a\x00b", "x" * 5000])
def test_bad_paths_are_rejected(path: str) -> None:
    with pytest.raises(InvalidRequest, match="invalid path"):
        v.check_path(path)


def test_env_names_must_be_identifiers() -> None:
    assert v.check_env({"A_1": "x"}) == {"A_1": "x"}
    with pytest.raises(InvalidRequest, match="invalid environment variable name"):
        v.check_env({"1BAD": "x"})


def test_timeout_bounds_are_explained() -> None:
    assert v.check_timeout(None, 60, 600) == 60
    with pytest.raises(InvalidRequest, match="between 0 and 600"):
        v.check_timeout(601, 60, 600)


def test_sizes_over_the_limit_say_the_limit() -> None:
    with pytest.raises(PayloadTooLarge, match="limit is 10 bytes"):
        v.check_size("content", 11, 10)


def test_tool_groups_parse_and_unknown_ones_list_the_valid_ones() -> None:
    assert parse_groups("core,files") == ("core", "files")
    assert "interpreter" in parse_groups(None)
    with pytest.raises(InvalidRequest, match="choose from: core"):
        parse_groups("core,nope")
