"""The host-side logic of the file tools: edit algorithms, path rules, host directories."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.config import ExecPolicy
from corral.errors import InvalidRequest
from corral.service.files import transfer
from corral.service.files.deps import FileDeps
from corral.service.files.edit import apply_line_edit, apply_snippet_edit
from corral.service.files.paths import check_not_protected, sandbox_path


def test_snippet_edit_needs_exactly_one_match() -> None:
    data = b"a = 1\nb = 2\na = 1\n"
    with pytest.raises(InvalidRequest, match=r"matches 2 times .*lines 1, 3.*replace_all"):
        apply_snippet_edit(data, "a = 1", "a = 9", replace_all=False, path="f")
    assert apply_snippet_edit(data, "a = 1", "a = 9", replace_all=True, path="f") == (
        b"a = 9\nb = 2\na = 9\n",
        2,
        1,
    )
    assert apply_snippet_edit(data, "b = 2\n", "", replace_all=False, path="f") == (b"a = 1\na = 1\n", 1, 2)
    with pytest.raises(InvalidRequest, match=r"not found.*differs only in whitespace"):
        apply_snippet_edit(data, "b  =  2", "x", replace_all=False, path="f")
    with pytest.raises(InvalidRequest, match="first line does occur \\(line 2\\)"):
        apply_snippet_edit(data, "b = 2\nc = 3", "x", replace_all=False, path="f")
    with pytest.raises(InvalidRequest, match="old_text is empty"):
        apply_snippet_edit(data, "", "x", replace_all=False, path="f")
    with pytest.raises(InvalidRequest, match="identical"):
        apply_snippet_edit(data, "b", "b", replace_all=False, path="f")


def test_snippet_edit_is_binary_safe() -> None:
    data = b"\x00\xff\xfeheader\x00value=1\x00"
    assert apply_snippet_edit(data, "value=1", "value=2", replace_all=False, path="f")[0] == (
        b"\x00\xff\xfeheader\x00value=2\x00"
    )


def test_line_edit() -> None:
    text = "one\ntwo\nthree\n"
    assert apply_line_edit(text, 2, None, "TWO", path="f") == ("one\nTWO\nthree\n", 2, 2)
    assert apply_line_edit(text, 1, 2, "x\ny\nz\n", path="f") == ("x\ny\nz\nthree\n", 1, 3)
    assert apply_line_edit(text, 3, 3, "", path="f")[0] == "one\ntwo\n"
    assert apply_line_edit("a\r\nb\r\n", 1, None, "A", path="f")[0] == "A\r\nb\r\n"
    with pytest.raises(InvalidRequest, match="between 1 and 3"):
        apply_line_edit(text, 4, None, "x", path="f")
    with pytest.raises(InvalidRequest, match="end_line must be between start_line \\(2\\) and 3"):
        apply_line_edit(text, 2, 1, "x", path="f")
    with pytest.raises(InvalidRequest, match="is empty"):
        apply_line_edit("", 1, None, "x", path="f")


def test_sandbox_paths_are_normalised_and_protected() -> None:
    assert sandbox_path("a/../b/./c/") == "/workspace/b/c"
    assert sandbox_path("//etc//x") == "/etc/x"
    assert sandbox_path("/workspace/..") == "/"
    for path in ("/", "/workspace", "/tmp", "/tmp/.corral", "/tmp/.corral/procs/x"):
        with pytest.raises(InvalidRequest, match="refusing to delete"):
            check_not_protected(path, "delete")
    check_not_protected("/workspace/x", "delete")
    check_not_protected("/tmp/x", "delete")


def fake_service(*dirs: Path) -> FileDeps:
    return FileDeps(sandboxes=None, policy=ExecPolicy(), host_dirs=tuple(dirs))  # type: ignore[arg-type]


def test_host_paths_must_stay_in_allowed_dirs(tmp_path: Path) -> None:
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    allowed.mkdir()
    outside.mkdir()
    (allowed / "escape").symlink_to(outside)
    service = fake_service(allowed)
    assert transfer.host_path(service, str(allowed / "a" / "b.txt")) == allowed / "a" / "b.txt"
    assert transfer.host_path(service, "rel.txt") == allowed / "rel.txt"
    for bad in (str(outside / "x"), "../outside/x", str(allowed / "escape" / "x"), "/etc/passwd"):
        with pytest.raises(InvalidRequest, match="outside the host directories the operator allowed"):
            transfer.host_path(service, bad)
    with pytest.raises(InvalidRequest, match="--allow-host-dir"):
        transfer.host_path(fake_service(), str(allowed / "x"))


def test_unsafe_names_from_the_sandbox_are_refused(tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to("/etc")
    assert transfer._inside(tmp_path, "a/b") == tmp_path / "a" / "b"
    for bad in ("../x", "/etc/passwd", "a/../../x", "a//b", "", "link/passwd", "x\x00y"):
        assert transfer._inside(tmp_path, bad) is None
