"""Corral bash interpreter driver: one persistent bash whose cwd, variables and functions survive.

Contract (see README.md next to this file): stdin is /dev/null, user output goes to stdout/stderr,
requests arrive as JSON lines on fd 3 and replies leave as JSON lines on fd 4.

How a run works: the cell is written to a private temp file and bash (interactive, so SIGINT
aborts the whole command line and returns to the "prompt" instead of killing the shell) gets one
line on its stdin: source the file with stdin from /dev/null and the status fd closed, then print
"<token> <status>" on the status fd. User code never holds the status fd and the token is random
per run, so nothing the code prints can fake the end of a run.

Stdlib only and Python >= 3.8: this file runs inside arbitrary sandbox images.
"""

import fcntl
import json
import os
import re
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile

CTL_IN_FD = 3
CTL_OUT_FD = 4
# Far above the fds user code plausibly uses (bash's own scratch fds start at 10).
HIGH_FD_MIN = 60
STASH_FD_MIN = 200
INTERRUPTED_STATUS = "130"
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _move_fd(fd, minimum, inheritable):
    try:
        new = fcntl.fcntl(fd, fcntl.F_DUPFD, minimum)
    except OSError:
        new = os.dup(fd)
    os.set_inheritable(new, inheritable)
    os.close(fd)
    return new


# ---------------------------------------------------------------- control channel


class Channel:
    def __init__(self, in_fd, out_fd):
        self.in_fd = _move_fd(in_fd, STASH_FD_MIN, False)
        self._out_fd = _move_fd(out_fd, STASH_FD_MIN, False)
        self._pending = b""

    def read_available(self):
        """Requests completed by one read of the control fd; None at EOF."""
        chunk = os.read(self.in_fd, 65536)
        if not chunk:
            return None
        lines = (self._pending + chunk).split(b"\n")
        self._pending = lines.pop()
        return [_parse_request(line) for line in lines if line.strip()]

    def send(self, message):
        data = (json.dumps(message, ensure_ascii=True, separators=(",", ":")) + "\n").encode("ascii")
        view = memoryview(data)
        while view:
            view = view[os.write(self._out_fd, view) :]


def _parse_request(line):
    try:
        request = json.loads(line.decode("utf-8", "replace"))
    except ValueError as exc:
        return {"id": None, "bad": f"malformed request: {exc}"}
    if not isinstance(request, dict) or not isinstance(request.get("code"), str):
        return {"id": request.get("id") if isinstance(request, dict) else None, "bad": "request needs 'code'"}
    return request


def error(ename, evalue):
    return {"ename": ename, "evalue": evalue, "traceback": f"{ename}: {evalue}"}


# ---------------------------------------------------------------- the shell


class ShellDied(Exception):
    def __init__(self, status):
        super().__init__(status)
        self.status = status


class Shell:
    """A bash -i fed one command line per run; its status lines come back on a private pipe."""

    def __init__(self, wakeup_fd):
        self._wakeup_fd = wakeup_fd
        self.proc = None
        self.status_r = None
        self.status_fd = None
        self._buffer = b""
        self.start()

    def start(self):
        status_r, status_w = os.pipe()
        status_w = _move_fd(status_w, HIGH_FD_MIN, True)
        stderr_fd = _move_fd(os.dup(2), HIGH_FD_MIN, True)
        try:
            # Its startup chatter ("no job control in this shell") goes to /dev/null; the first
            # command line points stderr back at ours.
            self.proc = subprocess.Popen(
                ["bash", "--norc", "--noprofile", "--noediting", "-i"],
                stdin=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                pass_fds=(status_w, stderr_fd),
                env=dict(os.environ, HISTFILE=""),
            )
        finally:
            os.close(status_w)
            os.close(stderr_fd)
        self.status_r = status_r
        self.status_fd = status_w
        self._buffer = b""
        token = secrets.token_hex(16)
        setup = (
            f"exec 2>&{stderr_fd} {stderr_fd}>&-; PS1=''; PS2=''; PS0=''; unset PROMPT_COMMAND MAILCHECK;"
            f" set +o history +H +m; builtin printf '%s 0\\n' {token} >&{status_w}"
        )
        self._write_line(setup)
        self.wait_status(token)

    def _write_line(self, line):
        try:
            self.proc.stdin.write(line.encode("utf-8", "surrogateescape") + b"\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass  # bash is gone; wait_status notices via EOF on the status pipe

    def begin(self, cell_path, token, env_set="", env_restore=""):
        # The restore runs after the status is reported, but before bash reads the next run's line.
        self._write_line(
            f"{env_set} builtin source {_quote(cell_path)} </dev/null {self.status_fd}>&-;"
            f" builtin printf '%s %s\\n' {token} \"$?\" >&{self.status_fd}; {env_restore}"
        )

    def ask_status(self, token, env_restore=""):
        """After an interrupt bash drops the rest of the run's line; this asks for $? anew."""
        self._write_line(f"builtin printf '%s %s\\n' {token} \"$?\" >&{self.status_fd}; {env_restore}")

    def wait_status(self, token, on_wakeup=None):
        """The status bash reports for token. Raises ShellDied if bash goes away first."""
        while True:
            status = self._take_line(token)
            if status is not None:
                return status
            readable, _, _ = select.select([self.status_r, self._wakeup_fd], [], [])
            if self._wakeup_fd in readable:
                _drain(self._wakeup_fd)
                if on_wakeup is not None:
                    on_wakeup()
            if self.status_r in readable:
                chunk = os.read(self.status_r, 4096)
                if not chunk:
                    raise ShellDied(self._reap())
                self._buffer += chunk

    def _take_line(self, token):
        # Lines carrying an older token (a stale status request after an interrupt) are skipped.
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            parts = line.decode("ascii", "replace").split(" ")
            if len(parts) == 2 and parts[0] == token:
                return parts[1]
        return None

    def _reap(self):
        """Exit status of a bash whose status pipe closed (it exited or exec'd something else)."""
        try:
            return self.proc.wait(timeout=1)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def close(self):
        os.close(self.status_r)
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _quote(text):
    return "'" + text.replace("'", "'\\''") + "'"


def env_commands(env):
    """Shell text exporting a run's variables, and text restoring them afterwards (set or unset)."""
    set_parts, restore_parts = [], []
    names = sorted(env) if isinstance(env, dict) else []
    for n, name in enumerate(names):
        value = env[name]
        if not NAME_RE.match(name) or not isinstance(value, str):
            continue
        saved = f"__corral_env_{n}"
        set_parts.append(f'{saved}="${{{name}+set}}:${{{name}-}}"; export {name}={_quote(value)};')
        restore_parts.append(
            f'if [ "${{{saved}%%:*}}" = set ]; then {name}="${{{saved}#*:}}"; else unset {name}; fi; unset {saved};'
        )
    return " ".join(set_parts), " ".join(restore_parts)


def _drain(fd):
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


# ---------------------------------------------------------------- interrupts


class Interrupts:
    """SIGINT only sets a flag (and wakes select through the wakeup fd); runs act on it."""

    def __init__(self):
        self.pending = False
        self.active = False
        self.read_fd, write_fd = os.pipe()
        for fd in (self.read_fd, write_fd):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(write_fd)
        signal.signal(signal.SIGINT, self._on_sigint)

    def _on_sigint(self, signum, frame):
        if self.active:  # idle SIGINTs are ignored
            self.pending = True

    def forward(self, shell_pid):
        """SIGINT to bash and its foreground children (background jobs ignore it)."""
        if os.getpgrp() != os.getpid():
            os.kill(shell_pid, signal.SIGINT)  # not our own group: don't signal our parent's
            return
        # Our own group includes us: ignore our copy while it goes out.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            os.killpg(os.getpgrp(), signal.SIGINT)
        finally:
            signal.signal(signal.SIGINT, previous)


# ---------------------------------------------------------------- runs


class Driver:
    def __init__(self):
        self.interrupts = Interrupts()
        self.shell = Shell(self.interrupts.read_fd)

    def run(self, request):
        token = secrets.token_hex(16)
        interrupted = []

        def on_wakeup():
            if not self.interrupts.pending:
                return
            self.interrupts.pending = False
            self.interrupts.forward(self.shell.proc.pid)
            if not interrupted:
                interrupted.append(True)
                self.shell.ask_status(token, env_restore)

        # A directory per run, gone when the run ends: a driver killed between runs leaves nothing.
        workdir = tempfile.mkdtemp(prefix="corral-bash-")
        cell_path = os.path.join(workdir, "cell")
        with open(cell_path, "w", encoding="utf-8", errors="surrogateescape") as cell:
            cell.write(request["code"])
        env_set, env_restore = env_commands(request.get("env"))
        self.interrupts.pending = False
        self.interrupts.active = True
        try:
            self.shell.begin(cell_path, token, env_set, env_restore)
            status = self.shell.wait_status(token, on_wakeup)
        except ShellDied as died:
            return self._after_death(died.status)
        finally:
            self.interrupts.active = False
            shutil.rmtree(workdir, ignore_errors=True)
        if interrupted:
            return status, error("Interrupted", "the run was interrupted (SIGINT); shell state is kept")
        return status, None

    def _after_death(self, status):
        self.shell.close()
        self.shell = Shell(self.interrupts.read_fd)
        return str(status), error(
            "ShellExited",
            f"bash exited with status {status} (exit, exec or set -e); a fresh bash was started and the "
            "previous shell state (variables, functions, cwd) is lost",
        )

    def handle(self, request):
        request_id = request.get("id")
        if "bad" in request:
            return {"id": request_id, "value": None, "outputs": [], "error": error("BadRequest", request["bad"])}
        value, err = self.run(request)
        return {"id": request_id, "value": value, "outputs": [], "error": err}

    def close(self):
        self.shell.close()


def serve(channel, driver):
    while True:
        readable, _, _ = select.select([channel.in_fd, driver.interrupts.read_fd], [], [])
        if driver.interrupts.read_fd in readable:
            _drain(driver.interrupts.read_fd)
        if channel.in_fd not in readable:
            continue
        requests = channel.read_available()
        if requests is None:
            return
        for request in requests:
            channel.send(driver.handle(request))


def main():
    channel = Channel(CTL_IN_FD, CTL_OUT_FD)
    if shutil.which("bash") is None:
        sys.stderr.write("corral bash driver: bash is not installed in this sandbox\n")
        sys.exit(127)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))
    driver = Driver()
    try:
        channel.send({"ready": True, "pid": os.getpid(), "language": "bash"})
        serve(channel, driver)
    finally:
        driver.close()


if __name__ == "__main__":
    main()
