"""python_driver.py: indented cells and IPython's `!cmd`, `%magic` and `%%magic` lines."""

from __future__ import annotations

import os
import time
from pathlib import Path

from .conftest import Driver


def test_a_cell_sent_indented_as_a_whole_runs(py: Driver) -> None:
    reply = py.run("    total = 0\n    for k in range(4):\n        total += k\n    total")
    assert reply["error"] is None and reply["value"] == "6"
    # Text inside a string keeps its indentation relative to the cell.
    assert py.run("\n        s = '''a\n          b'''\n        s")["value"] == repr("a\n  b")


def test_plain_python_is_never_rewritten(py: Driver) -> None:
    # `%` and `!` at the start of a line inside brackets or a string are Python, not magics.
    assert py.run("x = (10\n% 3)\nx")["value"] == "1"
    assert py.run("s = '''\n!ls\n%cd /\n'''\ns.split()")["value"] == "['!ls', '%cd', '/']"
    assert py.run("y = 1 if 2 != 3 else 0\ny")["value"] == "1"


def test_shell_lines_stream_their_output_and_expand_variables(py: Driver, tmp_path: Path) -> None:
    reply = py.run("name = 'world'\n!echo hello $name {1 + 1} $HOME_NOT_A_VAR\n!exit 3")
    assert reply["error"] is None
    assert py.stdout.wait_for("hello world 2\n")
    assert py.run("_exit_code")["value"] == "3"
    reply = py.run("for k in range(2):\n    !echo loop {k}")
    assert reply["error"] is None
    assert py.stdout.wait_for("loop 1\n").endswith("loop 0\nloop 1\n")


def test_shell_output_can_be_captured(py: Driver) -> None:
    reply = py.run("lines = !printf 'a\\nb\\n'\n[lines, lines.s, len(lines)]")
    assert reply["value"] == "[['a', 'b'], 'a b', 2]"


def test_cd_pwd_and_env_magics(py: Driver, tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    assert py.run("%cd sub")["error"] is None
    assert py.stdout.wait_for(str(tmp_path / "sub"))
    assert py.run("%pwd")["value"] == repr(str(tmp_path / "sub"))
    assert py.run("import os\nos.getcwd()")["value"] == repr(str(tmp_path / "sub"))
    py.run("!pwd > where.txt")
    assert (tmp_path / "sub" / "where.txt").read_text().strip() == str(tmp_path / "sub")
    assert py.run("%cd -")["error"] is None
    assert py.run("%pwd")["value"] == repr(str(tmp_path))
    assert py.run("%env CORRAL_TEST_VAR=42")["error"] is None
    assert py.run("%env CORRAL_TEST_VAR")["value"] == "'42'"
    assert py.run("!echo $CORRAL_TEST_VAR")["error"] is None
    assert py.stdout.wait_for("42\n")
    missing = py.run("%cd /no/such/dir")["error"]
    assert missing["ename"] == "UsageError" and "/no/such/dir" in missing["evalue"]


def test_time_magics_report_and_keep_the_value(py: Driver) -> None:
    reply = py.run("%time sum(range(10))")
    assert reply["value"] == "45"
    assert py.stdout.wait_for("Wall time:")
    reply = py.run("%%time\nz = 2\nz * 21")
    assert reply["value"] == "42"
    reply = py.run("%timeit -n 3 -r 2 sum(range(10))")
    assert reply["error"] is None
    assert py.stdout.wait_for("per loop (mean ± std. dev. of 2 runs, 3 loops each)")


def test_cell_magics_write_files_and_run_bash(py: Driver, tmp_path: Path) -> None:
    assert py.run("%%writefile notes.txt\nfirst line\n")["error"] is None
    assert (tmp_path / "notes.txt").read_text() == "first line\n"
    assert py.stdout.wait_for("Writing notes.txt")
    assert py.run("%%bash\nfor k in 1 2; do echo bash$k; done")["error"] is None
    assert py.stdout.wait_for("bash2\n")


def test_pip_magic_uses_the_interpreter_of_the_context(py: Driver) -> None:
    # No network here: --version shows which pip (and Python) %pip and !pip run.
    assert py.run("%pip --version")["error"] is None
    assert py.stdout.wait_for("pip ")
    executable = py.run("import sys\nsys.executable")["value"].strip("'")
    prefix = os.path.dirname(os.path.dirname(executable))
    py.stdout.take()
    assert py.run("!pip --version")["error"] is None
    assert prefix in py.stdout.wait_for("pip ")


def test_unknown_magic_is_a_usage_error_that_lists_what_works(py: Driver) -> None:
    error = py.run("%load_ext autoreload")["error"]
    assert error["ename"] == "UsageError"
    assert "%pip" in error["evalue"] and "%%writefile" in error["evalue"]
    assert error["traceback"].startswith("UsageError:")  # no driver frames
    assert py.run("%matplotlib inline")["error"] is None  # figures are always inline


def test_errors_inside_magics_show_only_user_frames(py: Driver) -> None:
    error = py.run("def boom():\n    return 1 / 0\n%time boom()")["error"]
    assert error["ename"] == "ZeroDivisionError"
    assert "python_magics" not in error["traceback"] and "python_driver" not in error["traceback"]
    assert "boom" in error["traceback"]


def test_interrupting_a_shell_line_stops_the_command(py: Driver, tmp_path: Path) -> None:
    py.send("!echo started; sleep 60; echo not-reached")
    py.stdout.wait_for("started")
    began = time.monotonic()
    py.interrupt()
    reply = py.reply()
    assert reply["error"]["ename"] == "KeyboardInterrupt"
    assert time.monotonic() - began < 10
    assert py.run("1 + 1")["value"] == "2"
    assert "not-reached" not in py.stdout.text()


def test_env_applies_to_one_run_only(py: Driver) -> None:
    code = "import os, subprocess\n[os.environ.get('RUN_VAR'), subprocess.check_output(['sh', '-c', 'echo $RUN_VAR'])]"
    assert py.run(code, env={"RUN_VAR": "once"})["value"] == "['once', b'once\\n']"
    assert py.run("import os\nos.environ.get('RUN_VAR')")["value"] is None
