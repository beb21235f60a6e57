"""node_driver.js: persistent vm context, completion values, top-level await, interrupts."""

from __future__ import annotations

from .conftest import Driver


def test_declarations_persist_between_runs(js: Driver) -> None:
    setup = "let a = 1\nconst b = 2\nvar c = 3\nfunction add(x, y) { return x + y }\nclass Box { get v() { return 4 } }"
    assert js.run(setup) == {"id": 1, "value": None, "outputs": [], "error": None}
    assert js.run("add(a, b) + c + new Box().v")["value"] == "10"


def test_a_cell_can_run_again(js: Driver) -> None:
    cell = "const data = [1, 2, 3]\nclass Point {}\ndata.length"
    assert js.run(cell)["value"] == "3"
    reply = js.run(cell)
    assert reply["error"] is None
    assert reply["value"] == "3"


def test_final_value_is_inspected_and_separate_from_stdout(js: Driver) -> None:
    reply = js.run("console.log('printed', 1);\n({a: [1, 2], s: 'x'})")
    assert reply["value"] == "{ a: [ 1, 2 ], s: 'x' }"
    assert js.stdout.wait_for("printed 1\n") == "printed 1\n"
    assert js.run("undefined")["value"] is None
    assert js.run("null")["value"] == "null"
    assert js.run("let unused = 5")["value"] is None


def test_console_error_goes_to_stderr(js: Driver) -> None:
    js.run("console.error('bad thing')")
    js.stderr.wait_for("bad thing\n")
    assert "bad thing" not in js.stdout.text()


def test_node_globals_are_available(js: Driver) -> None:
    code = "[typeof require, typeof process, typeof setTimeout, typeof Buffer, typeof URL].join(' ')"
    assert js.run(code)["value"] == "'function object function function function'"
    assert js.run("require('path').join('a', 'b')")["value"] == "'a/b'"
    assert js.run("global === globalThis")["value"] == "true"


def test_error_has_clean_stack(js: Driver) -> None:
    js.run("function explode() { throw new TypeError('nope') }")
    error = js.run("let q = 1\nexplode()")["error"]
    assert error["ename"] == "TypeError"
    assert error["evalue"] == "nope"
    trace = error["traceback"]
    assert "TypeError: nope" in trace
    assert "at explode (<cell-1>:1:28)" in trace
    assert "<cell-2>:2:1" in trace
    assert "node_driver" not in trace
    assert "node:" not in trace


def test_syntax_error(js: Driver) -> None:
    error = js.run("let x = ;")["error"]
    assert error["ename"] == "SyntaxError"
    assert "node_driver" not in error["traceback"]
    assert js.run("1 + 1")["value"] == "2"


def test_throwing_a_non_error(js: Driver) -> None:
    error = js.run("throw 'plain string'")["error"]
    assert error == {"ename": "Uncaught", "evalue": "'plain string'", "traceback": "Uncaught 'plain string'"}


def test_process_exit_is_an_error_not_a_death(js: Driver) -> None:
    error = js.run("process.exit(3)")["error"]
    assert error["ename"] == "ProcessExit"
    assert "node_driver" not in error["traceback"]
    assert js.run("'alive'")["value"] == "'alive'"


def test_top_level_await_keeps_declarations_and_value(js: Driver) -> None:
    code = (
        "const wait = (ms, v) => new Promise(r => setTimeout(() => r(v), ms))\n"
        "const got = await wait(5, 'later')\n"
        "let {x, y: [y1, ...ys]} = {x: 1, y: [2, 3, 4]}\n"
        "async function twice(v) { return 2 * (await wait(1, v)) }\n"
        "class Thing {}\n"
        "got + ':' + await twice(x + y1)"
    )
    reply = js.run(code)
    assert reply["error"] is None
    assert reply["value"] == "'later:6'"
    assert js.run("[got, x, y1, ys, typeof twice, typeof Thing]")["value"] == (
        "[ 'later', 1, 2, [ 3, 4 ], 'function', 'function' ]"
    )
    assert js.run("await twice(5)")["value"] == "10"


def test_rejected_await_reports_the_error(js: Driver) -> None:
    error = js.run("await Promise.resolve()\nnull.boom")["error"]
    assert error["ename"] == "TypeError"
    assert "at <cell-1>:2:" in error["traceback"]


def test_interrupt_stops_busy_loop_and_keeps_state(js: Driver) -> None:
    js.run("let kept = 'yes'")
    request_id = js.send("console.log('spinning')\nwhile (true) {}")
    js.stdout.wait_for("spinning")
    js.interrupt()
    reply = js.reply()
    assert reply["id"] == request_id
    assert reply["error"]["ename"] == "Interrupted"
    assert js.run("kept")["value"] == "'yes'"


def test_interrupt_during_await(js: Driver) -> None:
    # Printed after the first await: a SIGINT racing the end of the synchronous part can be
    # swallowed by Node's breakOnSigint watchdog (see the README), which this test must not hit.
    js.send("await null\nconsole.log('waiting')\nawait new Promise(() => {})")
    js.stdout.wait_for("waiting")
    js.interrupt()
    assert js.reply()["error"]["ename"] == "Interrupted"
    assert js.run("1 + 2")["value"] == "3"


def test_sigint_while_idle_is_ignored(js: Driver) -> None:
    js.run("let n = 5")
    for _ in range(3):
        js.interrupt()
    assert js.run("n * 2")["value"] == "10"
    assert js.proc.poll() is None


def test_huge_value_is_capped(js: Driver) -> None:
    value = js.run("'x'.repeat(1000000)")["value"]
    assert len(value) < 70_000
    assert value.startswith("'xxx")
    value = js.run("Array.from({length: 200000}, (_, i) => i).join(',')")["value"]
    assert len(value) < 70_000
    assert "characters truncated" in value or "more characters" in value


def test_huge_output_streams_through(js: Driver) -> None:
    reply = js.run("for (let i = 0; i < 2000; i++) console.log('z'.repeat(2000))\n'end'")
    assert reply["value"] == "'end'"
    assert js.stdout.wait_size(2000 * 2001) >= 2000 * 2001


def test_unhandled_rejection_does_not_kill_the_driver(js: Driver) -> None:
    js.run("Promise.reject(new Error('ignored'))")
    js.stderr.wait_for("ignored")
    assert js.run("'fine'")["value"] == "'fine'"


def test_malformed_request_gets_an_error(js: Driver) -> None:
    js.send_raw("{not json\n")
    reply = js.reply()
    assert reply["id"] is None
    assert reply["error"]["ename"] == "BadRequest"
    assert js.run("7")["value"] == "7"


def test_tricky_lexing_does_not_break_code(js: Driver) -> None:
    code = (
        "const re = /[/}]+/g; const tpl = `a ${'}'} ${ {b: 1}.b } c`\n"
        "// let commented = 1\n"
        "const s = 'let x = 1; }'; const ratio = 10 / 2 / 1\n"
        "const o = {\n  k: 1,\n};\n"
        "[re.source, tpl, s, ratio, o.k]"
    )
    reply = js.run(code)
    assert reply["error"] is None
    assert reply["value"] == "[ '[/}]+', 'a } 1 c', 'let x = 1; }', 5, 1 ]"
