"""python_driver.py: persistent namespace, notebook values, clean errors, interrupts, images."""

from __future__ import annotations

import base64
import io
import signal
from typing import Any

import pytest

from .conftest import Driver, driver_python_has

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
needs_matplotlib = pytest.mark.skipif(
    not driver_python_has("matplotlib"), reason="matplotlib is not installed for the driver's Python"
)
needs_pil = pytest.mark.skipif(not driver_python_has("PIL"), reason="Pillow is not installed for the driver's Python")


def pngs(reply: dict[str, Any]) -> list[str]:
    return [output["png"] for output in reply["outputs"] if "png" in output]


def test_globals_and_imports_persist(py: Driver) -> None:
    assert py.run("import math\nx = 20\ndef twice(v):\n    return 2 * v")["error"] is None
    reply = py.run("twice(x) + math.floor(1.5)")
    assert reply == {"id": reply["id"], "value": "41", "outputs": [{"text": "41", "main": True}], "error": None}


def test_final_expression_value_and_stdout_are_separate(py: Driver) -> None:
    reply = py.run("print('hello')\n{'a': [1, 2]}")
    assert reply["value"] == "{'a': [1, 2]}"
    assert py.stdout.wait_for("hello\n") == "hello\n"


def test_none_and_statement_values_are_null(py: Driver) -> None:
    assert py.run("None")["value"] is None
    assert py.run("y = 3")["value"] is None
    assert py.run("for i in range(2):\n    i")["value"] is None
    assert py.run("")["value"] is None


def test_stderr_reaches_the_stderr_pipe(py: Driver) -> None:
    py.run("import sys\nsys.stderr.write('oops\\n')")
    py.stderr.wait_for("oops\n")
    assert "oops" not in py.stdout.text()


def test_exception_has_clean_traceback(py: Driver) -> None:
    py.run("def boom():\n    raise ValueError('bad value')")
    error = py.run("x = 1\nboom()")["error"]
    assert error["ename"] == "ValueError"
    assert error["evalue"] == "bad value"
    trace = error["traceback"]
    assert trace.startswith("Traceback (most recent call last):")
    assert 'File "<cell-2>", line 2, in <module>' in trace
    assert 'File "<cell-1>", line 2, in boom' in trace
    assert "raise ValueError('bad value')" in trace
    assert "python_driver" not in trace
    assert trace.endswith("ValueError: bad value")


def test_syntax_error_is_reported_cleanly(py: Driver) -> None:
    error = py.run("x = (1,\nprint(x")["error"]
    assert error["ename"] == "SyntaxError"
    assert "python_driver" not in error["traceback"]
    assert "Traceback" not in error["traceback"]
    assert '"<cell-1>"' in error["traceback"]
    assert py.run("1 + 1")["value"] == "2"


def test_sys_exit_is_an_error_not_a_death(py: Driver) -> None:
    error = py.run("import sys\nsys.exit(3)")["error"]
    assert error["ename"] == "SystemExit"
    assert error["evalue"] == "3"
    assert py.run("'alive'")["value"] == "'alive'"


def test_control_fds_are_out_of_reach(py: Driver) -> None:
    reply = py.run("import os\nfor fd in (3, 4):\n    try:\n        os.close(fd)\n    except OSError:\n        pass")
    assert reply["error"] is None
    assert py.run("40 + 2")["value"] == "42"


def test_interrupt_stops_busy_loop_and_keeps_state(py: Driver) -> None:
    py.run("kept = 'yes'")
    request_id = py.send("print('spinning', flush=True)\nwhile True:\n    pass")
    py.stdout.wait_for("spinning")
    py.interrupt()
    reply = py.reply()
    assert reply["id"] == request_id
    assert reply["error"]["ename"] == "KeyboardInterrupt"
    assert "python_driver" not in reply["error"]["traceback"]
    assert '"<cell-2>"' in reply["error"]["traceback"]
    assert py.run("kept")["value"] == "'yes'"


def test_interrupt_during_sleep(py: Driver) -> None:
    py.send("import time\nprint('sleeping', flush=True)\ntime.sleep(60)")
    py.stdout.wait_for("sleeping")
    py.interrupt()
    assert py.reply()["error"]["ename"] == "KeyboardInterrupt"


def test_sigint_while_idle_is_ignored(py: Driver) -> None:
    py.run("n = 5")
    for _ in range(3):
        py.interrupt()
    reply = py.run("n * 2")
    assert reply["value"] == "10"
    assert reply["error"] is None
    assert py.proc.poll() is None


def test_top_level_await(py: Driver) -> None:
    reply = py.run("import asyncio\nawait asyncio.sleep(0)\nresult = await asyncio.sleep(0, 'done')\nresult")
    assert reply["error"] is None
    assert reply["value"] == "'done'"
    assert py.run("result")["value"] == "'done'"


def test_interrupt_during_await(py: Driver) -> None:
    py.send("import asyncio\nprint('waiting', flush=True)\nawait asyncio.sleep(60)")
    py.stdout.wait_for("waiting")
    py.interrupt()
    assert py.reply()["error"]["ename"] == "KeyboardInterrupt"
    assert py.run("await asyncio.sleep(0, 7)")["value"] == "7"


def test_huge_repr_is_capped(py: Driver) -> None:
    value = py.run("'x' * 1_000_000")["value"]
    assert len(value) < 70_000
    assert "characters truncated" in value
    assert value.startswith("'xxx") and value.endswith("xxx'")


def test_huge_output_streams_through(py: Driver) -> None:
    reply = py.run("print('y' * 5_000_000)\n'end'")
    assert reply["value"] == "'end'"
    assert py.stdout.wait_size(5_000_001) >= 5_000_001  # all of it, not cut


def test_user_classes_live_in_main(py: Driver) -> None:
    py.run("import pickle\nclass Point:\n    pass")
    assert py.run("type(pickle.loads(pickle.dumps(Point()))).__module__")["value"] == "'__main__'"


def test_malformed_request_gets_an_error(py: Driver) -> None:
    py.send_raw("this is not json\n")
    reply = py.reply()
    assert reply["id"] is None
    assert reply["error"]["ename"] == "BadRequest"
    assert py.run("1")["value"] == "1"


@needs_matplotlib
def test_every_matplotlib_figure_becomes_a_png(py: Driver) -> None:
    code = (
        "import matplotlib.pyplot as plt\n"
        "plt.plot([1, 2, 3])\n"
        "plt.show()\n"  # ends the first figure, as in a notebook
        "plt.plot([3, 2, 1])\n"
        "plt.figure()\n"
        "plt.bar([1, 2], [3, 4])\n"
        "None"
    )
    reply = py.run(code)
    assert reply["error"] is None
    assert len(pngs(reply)) == 3
    assert all(base64.b64decode(image).startswith(PNG_MAGIC) for image in pngs(reply))
    assert py.run("plt.get_fignums()")["value"] == "[]"
    assert py.run("import matplotlib\nmatplotlib.get_backend().lower()")["value"] == "'agg'"
    assert pngs(py.run("1")) == []


@needs_matplotlib
def test_figures_are_returned_even_when_the_run_fails(py: Driver) -> None:
    reply = py.run("import matplotlib.pyplot as plt\nplt.plot([1, 2])\nraise RuntimeError('late')")
    assert reply["error"]["ename"] == "RuntimeError"
    assert len(pngs(reply)) == 1


@needs_pil
def test_pil_image_value_is_a_png(py: Driver) -> None:
    image_module = pytest.importorskip("PIL.Image")
    reply = py.run("from PIL import Image\nImage.new('RGB', (4, 3), 'red')")
    assert reply["error"] is None
    assert reply["value"] is None
    assert len(pngs(reply)) == 1
    image = image_module.open(io.BytesIO(base64.b64decode(pngs(reply)[0])))
    assert image.size == (4, 3)


def test_driver_survives_sigint_storm_between_runs(py: Driver) -> None:
    for attempt in range(5):
        py.send(f"print('go{attempt}', flush=True)\nwhile True: pass")
        py.stdout.wait_for(f"go{attempt}")
        py.interrupt()
        assert py.reply()["error"]["ename"] == "KeyboardInterrupt"
        py.proc.send_signal(signal.SIGINT)
    assert py.run("'still here'")["value"] == "'still here'"
