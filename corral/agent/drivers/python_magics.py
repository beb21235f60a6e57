"""IPython-style conveniences for the Python driver, without IPython: `!cmd`, `%magic`, `%%magic`.

Loaded by python_driver.py from its own directory. Corral implements the few that agents use
all the time instead of running IPython (which many images lack), so cells behave the same in
every image:
  !cmd              run in bash (sh if there is none); output streams as the cell's output;
                    `_exit_code` holds the status. `x = !cmd` captures stdout lines (an SList).
  %pip ...          pip of this interpreter (`!pip ...` too); the next import sees what it installed
  %cd [dir|-]       change the working directory (of the interpreter and its `!` commands)
  %pwd  %env  %time  %timeit  %sx  %run  %matplotlib (inline is the default; accepted, ignored)
  %%time  %%timeit  %%bash  %%sh  %%writefile [-a] path  %%html  %%markdown
In `!` and `%` lines `{expr}` is replaced by its value and `$name` by a variable's, as in IPython
(left as written when that fails). Anything else starting with `%` is a UsageError that lists these.

A cell is only rewritten when it does not compile as Python: plain Python is never touched.
Stdlib only and Python >= 3.8: this file runs inside arbitrary sandbox images.
"""

# shlex, shutil, subprocess and timeit are imported by the magics that use them: most contexts never
# run one, and every idle interpreter would carry them (~1 MiB per sandbox under gVisor, measured).
import importlib
import os
import re
import signal
import site
import sys
import time

SHELL_NAME = "__corral__"  # the builtin transformed cells call
ASSIGN_RE = re.compile(r"^([A-Za-z_][\w.]*(?:\s*,\s*[A-Za-z_][\w.]*)*)\s*=\s*([!%])(.*)$", re.S)
MAGIC_RE = re.compile(r"^%(\w+)(.*)$", re.S)
EXPAND_RE = re.compile(r"\$\$|\$([A-Za-z_]\w*)|\{([^{}]+)\}")
PIP_RE = re.compile(r"^\s*pip(?:3(?:\.\d+)?)?(?=\s|$)")
LINE_MAGICS = ("pip", "cd", "pwd", "env", "time", "timeit", "sx", "system", "run", "matplotlib")
CELL_MAGICS = ("time", "timeit", "bash", "sh", "writefile", "html", "markdown")
SUPPORTED_LINE = ", ".join("%" + m for m in LINE_MAGICS)
SUPPORTED_CELL = ", ".join("%%" + m for m in CELL_MAGICS)
INTERRUPT_GRACE = 1.0


class UsageError(Exception):
    """A magic used wrongly; reported without a traceback."""


UsageError.__module__ = "builtins"  # shown as "UsageError: ...", as IPython shows its own


class SList(list):
    """Lines of a `!` command's output, as IPython gives them: `.s` joins with spaces, `.n` with
    newlines."""

    @property
    def s(self):
        return " ".join(self)

    @property
    def n(self):
        return "\n".join(self)


# ---------------------------------------------------------------- finding escape lines


class _Lines:
    """Tracks, line by line, whether the next line starts a new statement (not inside brackets, a
    string or a backslash continuation)."""

    def __init__(self):
        self.depth = 0
        self.quote = None  # the open triple quote
        self.continued = False

    def at_statement_start(self):
        return self.depth == 0 and self.quote is None and not self.continued

    def feed(self, line):
        i, n = 0, len(line)
        self.continued = False
        while i < n:
            if self.quote is not None:
                end = line.find(self.quote, i)
                while end > 0 and _escaped(line, end):
                    end = line.find(self.quote, end + 1)
                if end < 0:
                    return
                i, self.quote = end + 3, None
                continue
            ch = line[i]
            if ch == "#":
                return
            if ch in "\"'":
                if line.startswith(ch * 3, i):
                    self.quote, i = ch * 3, i + 3
                    continue
                i += 1
                while i < n and line[i] != ch and line[i] != "\n":
                    i += 2 if line[i] == "\\" else 1
                i += 1
                continue
            if ch in "([{":
                self.depth += 1
            elif ch in ")]}":
                self.depth = max(0, self.depth - 1)
            elif ch == "\\" and line[i + 1 :].strip() == "":
                self.continued = True
            i += 1


def _escaped(line, index):
    backslashes = 0
    while index - backslashes - 1 >= 0 and line[index - backslashes - 1] == "\\":
        backslashes += 1
    return backslashes % 2 == 1


def _call(method, *args):
    return f"{SHELL_NAME}.{method}({', '.join(repr(a) for a in args)})"


def _escape(text):
    """The call replacing `!cmd` or `%magic args` (text without its indentation)."""
    if text.startswith("!"):
        return _call("system", text[1:].strip())
    match = MAGIC_RE.match(text)
    if match is None:
        return None
    return _call("magic", match.group(1), match.group(2).strip())


def transform(source):
    """source with its escape lines turned into calls to the shell object; lines keep their numbers."""
    stripped = source.lstrip("\n")
    if stripped.startswith("%%"):
        first, _, body = stripped.partition("\n")
        match = re.match(r"%%(\w+)(.*)$", first)
        if match is None:
            return source
        call = _call("cell_magic", match.group(1), match.group(2).strip(), body)
        return "\n" * (len(source) - len(stripped)) + call + "\n"
    out = []
    lines = _Lines()
    for line in source.splitlines(True):
        if lines.at_statement_start():
            text = line.strip()
            indent = line[: len(line) - len(line.lstrip())]
            newline = "\n" if line.endswith("\n") else ""
            call = None
            if text.startswith(("!", "%")) and not text.startswith("%%"):
                call = _escape(text)
            else:
                match = ASSIGN_RE.match(text)
                if match is not None:
                    rest = match.group(2) + match.group(3)
                    call = match.group(1) + " = " + (
                        _call("getoutput", rest[1:].strip()) if rest.startswith("!") else (_escape(rest) or "")
                    )
            if call:
                out.append(indent + call + newline)
                continue
        out.append(line)
        lines.feed(line)
    return "".join(out)


# ---------------------------------------------------------------- running things


def expand(text, namespace):
    """IPython's variable expansion: {expr} and $name, each left as written when it fails."""

    def replace(match):
        whole = match.group(0)
        if whole == "$$":
            return "$"
        if match.group(1) is not None:
            name = match.group(1)
            return str(namespace[name]) if name in namespace else whole
        try:
            return str(eval(match.group(2), namespace))
        except Exception:
            return whole

    return EXPAND_RE.sub(replace, text)


def user_site_appeared():
    """Whether the user site exists but is not on sys.path (a `pip install --user` made it)."""
    if not site.ENABLE_USER_SITE:
        return False
    user_site = site.getusersitepackages()
    return user_site not in sys.path and os.path.isdir(user_site)


def refresh_import_paths():
    """After an install: the user site (created by the first `pip install --user`) goes on
    sys.path ahead of the system's packages, and import caches are dropped."""
    importlib.invalidate_caches()
    if not site.ENABLE_USER_SITE:
        return
    user_site = site.getusersitepackages()
    if not os.path.isdir(user_site) or user_site in sys.path:
        return
    index = next((k for k, p in enumerate(sys.path) if p.endswith(("dist-packages", "site-packages"))), len(sys.path))
    sys.path.insert(index, user_site)
    site.addsitedir(user_site)  # its .pth files


def _flush():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


def _own_pip(command):
    """`!pip ...` is this interpreter's pip, so what it installs is importable here."""
    import shlex
    return PIP_RE.sub(shlex.quote(sys.executable) + " -m pip", command, count=1)


def _start(argv, shell, **kwargs):
    import subprocess
    _flush()
    # Its own process group, so an interrupt reaches the whole command line (and only it).
    if sys.version_info >= (3, 11):
        kwargs["process_group"] = 0
    else:
        kwargs["preexec_fn"] = os.setpgrp
    return subprocess.Popen(argv, shell=shell, stdin=subprocess.DEVNULL, **kwargs)


def _wait(proc):
    import subprocess
    try:
        return proc.wait()
    except KeyboardInterrupt:
        for sig in (signal.SIGINT, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except OSError:
                pass
            try:
                proc.wait(INTERRUPT_GRACE)
                break
            except subprocess.TimeoutExpired:
                continue
            except KeyboardInterrupt:
                continue
        raise


def _shell_argv(command):
    import shutil
    bash = shutil.which("bash")
    return [bash, "-c", command] if bash else ["/bin/sh", "-c", command]


def _cpu_times():
    try:
        import resource

        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime, usage.ru_stime
    except (ImportError, OSError):
        times = os.times()
        return times[0], times[1]


def _fmt_seconds(seconds):
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)):
        if seconds >= scale or unit == "ns":
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds:.3g} s"


class Shell:
    """What transformed cells call. run_source(code) runs code like a cell and returns its value."""

    def __init__(self, namespace, run_source, show):
        self.namespace = namespace
        self._run_source = run_source
        self._show = show
        self._oldpwd = None

    def _frame_namespace(self, depth=2):
        frame = sys._getframe(depth)
        namespace = dict(frame.f_globals)
        namespace.update(frame.f_locals)
        return namespace

    # -- shell escapes (`!cmd`, `x = !cmd`): expanded with the calling cell's variables
    def system(self, command):
        self._system(expand(command, self._frame_namespace()))

    def getoutput(self, command):
        return self._getoutput(expand(command, self._frame_namespace()))

    def _system(self, command):
        proc = _start(_shell_argv(_own_pip(command)), False)
        status = _wait(proc)
        self.namespace["_exit_code"] = status
        refresh_import_paths()

    def _getoutput(self, command):
        import subprocess
        proc = _start(_shell_argv(_own_pip(command)), False, stdout=subprocess.PIPE)
        try:
            out = proc.stdout.read()
        finally:
            _wait(proc)
            proc.stdout.close()
        self.namespace["_exit_code"] = proc.returncode
        refresh_import_paths()
        return SList(out.decode("utf-8", "replace").splitlines())

    # -- magics
    def magic(self, name, line):
        if name not in LINE_MAGICS:
            raise UsageError(
                f"Line magic function `%{name}` not found. Corral supports: {SUPPORTED_LINE}; cell magics: "
                f"{SUPPORTED_CELL}"
            )
        namespace = self._frame_namespace()
        if name not in ("time", "timeit", "run"):
            line = expand(line, namespace)
        return getattr(self, "_line_" + name)(line)

    def cell_magic(self, name, line, body):
        if name not in CELL_MAGICS:
            raise UsageError(
                f"Cell magic `%%{name}` not found. Corral supports: {SUPPORTED_CELL}"
            )
        return getattr(self, "_cell_" + name)(expand(line, self._frame_namespace()), body)

    def _line_pip(self, line):
        import shlex
        status = _wait(_start([sys.executable, "-m", "pip", *shlex.split(line)], False))
        self.namespace["_exit_code"] = status
        refresh_import_paths()

    def _line_cd(self, line):
        import shlex
        args = shlex.split(line)
        quiet = "-q" in args
        args = [a for a in args if a != "-q"]
        target = args[0] if args else os.path.expanduser("~")
        if target == "-":
            if self._oldpwd is None:
                raise UsageError("%cd -: there is no previous directory")
            target = self._oldpwd
        previous = os.getcwd()
        try:
            os.chdir(os.path.expanduser(target))
        except OSError as exc:
            raise UsageError(f"%cd: {target}: {exc.strerror}") from None
        self._oldpwd = previous
        os.environ["PWD"] = os.getcwd()
        if not quiet:
            print(os.getcwd())

    def _line_pwd(self, line):
        return os.getcwd()

    def _line_env(self, line):
        line = line.strip()
        if not line:
            return dict(os.environ)
        match = re.match(r"^(\w+)(?:\s*=\s*|\s+)(.*)$", line)
        if match is None:
            if line in os.environ:
                return os.environ[line]
            raise UsageError(f"%env: environment variable {line} is not set")
        os.environ[match.group(1)] = match.group(2)
        print(f"env: {match.group(1)}={match.group(2)}")

    def _line_sx(self, line):
        return self._getoutput(line)

    _line_system = _line_sx

    def _line_matplotlib(self, line):
        return None  # figures always come back inline, as PNGs with their chart data

    def _line_time(self, line, body=None):
        source = body if body is not None else line
        wall, cpu = time.perf_counter(), _cpu_times()
        try:
            return self._run_source(source)
        finally:
            after = _cpu_times()
            user, system = after[0] - cpu[0], after[1] - cpu[1]
            wall = time.perf_counter() - wall
            print(f"CPU times: user {_fmt_seconds(user)}, sys: {_fmt_seconds(system)}, "
                  f"total: {_fmt_seconds(user + system)}\nWall time: {_fmt_seconds(wall)}")

    def _line_timeit(self, line, body=None):
        import timeit
        number, repeat, quiet = None, 7, False
        args = line.strip()
        while True:
            match = re.match(r"^-(n|r)\s*(\d+)\s*|^-(q)\s*", args)
            if match is None:
                break
            if match.group(1) == "n":
                number = max(1, int(match.group(2)))
            elif match.group(1) == "r":
                repeat = max(1, int(match.group(2)))
            else:
                quiet = True
            args = args[match.end() :]
        setup, stmt = (args, body) if body is not None else ("pass", args)
        if not stmt.strip():
            raise UsageError("%timeit needs a statement to time")
        timer = timeit.Timer(stmt, setup or "pass", globals=self.namespace)
        if number is None:
            number = timer.autorange()[0]
        per_loop = [t / number for t in timer.repeat(repeat, number)]
        mean = sum(per_loop) / len(per_loop)
        std = (sum((t - mean) ** 2 for t in per_loop) / len(per_loop)) ** 0.5
        if not quiet:
            runs = f"{repeat} run{'s' if repeat != 1 else ''}, {number} loop{'s' if number != 1 else ''} each"
            print(f"{_fmt_seconds(mean)} ± {_fmt_seconds(std)} per loop (mean ± std. dev. of {runs})")

    def _line_run(self, line):
        import shlex
        argv = shlex.split(line)
        if not argv:
            raise UsageError("%run needs a file: %run script.py [args]")
        path = os.path.expanduser(argv[0])
        try:
            with open(path, "rb") as handle:
                source = handle.read()
        except OSError as exc:
            raise UsageError(f"%run: {path}: {exc.strerror}") from None
        import builtins

        namespace = {"__name__": "__main__", "__file__": path, "__builtins__": builtins}
        saved = sys.argv[:]
        sys.argv[:] = argv
        try:
            exec(compile(source, path, "exec"), namespace)
        finally:
            sys.argv[:] = saved
            self.namespace.update((k, v) for k, v in namespace.items() if not k.startswith("__"))

    # -- cell magics
    def _cell_time(self, line, body):
        return self._line_time(line, body)

    def _cell_timeit(self, line, body):
        return self._line_timeit(line, body)

    def _cell_bash(self, line, body):
        import shutil
        status = _wait(_start(["bash", "-c", body] if shutil.which("bash") else ["/bin/sh", "-c", body], False))
        self.namespace["_exit_code"] = status
        refresh_import_paths()

    def _cell_sh(self, line, body):
        status = _wait(_start(["/bin/sh", "-c", body], False))
        self.namespace["_exit_code"] = status

    def _cell_writefile(self, line, body):
        import shlex
        args = shlex.split(line)
        append = "-a" in args or "--append" in args
        paths = [a for a in args if a not in ("-a", "--append")]
        if len(paths) != 1:
            raise UsageError("%%writefile needs one file name: %%writefile [-a] path")
        path = os.path.expanduser(paths[0])
        exists = os.path.exists(path)
        with open(path, "a" if append else "w", encoding="utf-8") as handle:
            handle.write(body if body.endswith("\n") or not body else body + "\n")
        verb = "Appending to" if append else ("Overwriting" if exists else "Writing")
        print(f"{verb} {paths[0]}")

    def _cell_html(self, line, body):
        self._show({"text/html": body, "text/plain": "<IPython.core.display.HTML object>"})

    def _cell_markdown(self, line, body):
        self._show({"text/markdown": body, "text/plain": body})
