"""bash_driver.py: persistent shell state, exit status as value, interrupts, spoof-proof endings."""

from __future__ import annotations

from pathlib import Path

from .conftest import Driver


def test_variables_functions_and_cwd_persist(sh: Driver, tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    setup = 'greeting=hello\nexport SHOUT=1\nsay() { echo "$greeting, $1"; }\ncd sub'
    assert sh.run(setup) == {"id": 1, "value": "0", "outputs": [], "error": None}
    reply = sh.run('say world\npwd\necho "shout=$SHOUT"')
    assert reply["value"] == "0"
    sh.stdout.wait_for("shout=1\n")
    assert sh.stdout.text() == f"hello, world\n{tmp_path / 'sub'}\nshout=1\n"


def test_value_is_the_exit_status(sh: Driver) -> None:
    assert sh.run("true")["value"] == "0"
    assert sh.run("false")["value"] == "1"
    reply = sh.run("(exit 7)")
    assert reply["value"] == "7"
    assert reply["error"] is None


def test_stdout_and_stderr_reach_their_pipes(sh: Driver) -> None:
    sh.run("echo out; echo err >&2")
    sh.stdout.wait_for("out\n")
    sh.stderr.wait_for("err\n")
    assert "err" not in sh.stdout.text()
    assert "out" not in sh.stderr.text()


def test_stdin_is_empty(sh: Driver) -> None:
    sh.run('read -r line; echo "status=$? line=[$line]"')
    sh.stdout.wait_for("status=1 line=[]")


def test_syntax_error_keeps_the_shell(sh: Driver) -> None:
    sh.run("kept=1")
    reply = sh.run("if then fi")
    assert reply["value"] == "2"
    sh.stderr.wait_for("syntax error")
    sh.run('echo "kept=$kept"')
    sh.stdout.wait_for("kept=1")


def test_return_ends_the_cell_early(sh: Driver) -> None:
    reply = sh.run("echo before\nreturn 5\necho after")
    assert reply["value"] == "5"
    assert "after" not in sh.stdout.wait_for("before\n")


def test_printing_the_sentinel_cannot_fake_completion(sh: Driver) -> None:
    # Whatever a status line might look like, user output never reaches the status pipe: the
    # run ends only when bash itself reports, with this run's random token.
    code = (
        'for fd in 3 4 5 6 7 8 9 10 11 12 60 61 62 63; do echo "spoof 0" >&$fd; done 2>/dev/null\n'
        "echo '0 0'; printf '%s 0\\n' deadbeef; echo done-spoofing\n"
        "(exit 9)"
    )
    reply = sh.run(code)
    assert reply["value"] == "9"
    assert reply["error"] is None
    sh.stdout.wait_for("done-spoofing")
    assert sh.run("echo next")["value"] == "0"


def test_interrupt_stops_busy_loop_and_keeps_state(sh: Driver) -> None:
    sh.run("kept=yes")
    request_id = sh.send("echo spinning\nwhile true; do :; done\necho not-reached")
    sh.stdout.wait_for("spinning")
    sh.interrupt()
    reply = sh.reply()
    assert reply["id"] == request_id
    assert reply["error"]["ename"] == "Interrupted"
    assert reply["value"] == "130"
    sh.run('echo "kept=$kept"')
    assert "not-reached" not in sh.stdout.wait_for("kept=yes")


def test_interrupt_kills_foreground_child(sh: Driver) -> None:
    # The marker comes from the child itself: a SIGINT racing bash's fork could be missed by
    # the child, as with Ctrl-C in a terminal.
    sh.send("sh -c 'echo sleeping; exec sleep 60'\necho not-reached")
    sh.stdout.wait_for("sleeping")
    sh.interrupt()
    reply = sh.reply()
    assert reply["error"]["ename"] == "Interrupted"
    assert sh.run("echo fine")["value"] == "0"
    assert "not-reached" not in sh.stdout.wait_for("fine")


def test_sigint_while_idle_is_ignored(sh: Driver) -> None:
    sh.run("n=5")
    for _ in range(3):
        sh.interrupt()
    reply = sh.run('echo "n=$n"')
    assert reply == {"id": 2, "value": "0", "outputs": [], "error": None}
    sh.stdout.wait_for("n=5")
    assert sh.proc.poll() is None


def test_exit_restarts_the_shell_and_says_state_is_lost(sh: Driver) -> None:
    sh.run("lost=1")
    reply = sh.run("exit 4")
    assert reply["value"] == "4"
    assert reply["error"]["ename"] == "ShellExited"
    sh.run('echo "lost=[$lost]"')
    sh.stdout.wait_for("lost=[]")


def test_huge_output_streams_through(sh: Driver) -> None:
    reply = sh.run("head -c 5000000 /dev/zero | tr '\\0' x; echo")
    assert reply["value"] == "0"
    assert sh.stdout.wait_size(5_000_001) >= 5_000_001


def test_background_job_does_not_block_the_run(sh: Driver) -> None:
    reply = sh.run("sleep 60 &\necho started")
    assert reply["value"] == "0"
    sh.stdout.wait_for("started")


def test_malformed_request_gets_an_error(sh: Driver) -> None:
    sh.send_raw("[1, 2]\n")
    reply = sh.reply()
    assert reply["id"] is None
    assert reply["error"]["ename"] == "BadRequest"
    assert sh.run("true")["value"] == "0"


def test_env_applies_to_one_run_only_and_restores_what_was_there(sh: Driver) -> None:
    sh.run("export KEPT=before")
    code = 'echo "kept=$KEPT new=$NEW"; sh -c \'echo "child=$KEPT/$NEW"\''
    reply = sh.run(code, env={"KEPT": "during", "NEW": "x y"})
    assert reply["value"] == "0"
    sh.stdout.wait_for("child=during/x y\n")
    assert "kept=during new=x y\n" in sh.stdout.text()
    sh.run('echo "after=$KEPT/${NEW-unset}"')
    sh.stdout.wait_for("after=before/unset\n")
