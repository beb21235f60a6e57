"""Corral Python interpreter driver: one persistent namespace, notebook-style runs.

Contract (see README.md next to this file): stdin is /dev/null, user output goes to stdout/stderr,
requests arrive as JSON lines on fd 3 and replies leave as JSON lines on fd 4.

Stdlib only and Python >= 3.8: this file runs inside arbitrary sandbox images.
"""

import ast
import builtins
import fcntl
import importlib.util
import json
import linecache
import os
import signal
import sys
import textwrap
import traceback
import types
import warnings

CTL_IN_FD = 3
CTL_OUT_FD = 4
# Far above the fds user code plausibly opens, closes or dup2()s over.
STASH_FD_MIN = 200
MAX_TEXT_CHARS = 64 * 1024
CELL_PREFIX = "<cell-"
CO_COROUTINE = 0x0080
TOP_LEVEL_AWAIT = getattr(ast, "PyCF_ALLOW_TOP_LEVEL_AWAIT", 0)
DRIVER_FILE = (lambda: None).__code__.co_filename
DRIVER_DIR = os.path.dirname(os.path.abspath(DRIVER_FILE))


def _load_sibling(name):
    """A helper module next to this file, under a name user code will not collide with."""
    spec = importlib.util.spec_from_file_location("corral_" + name, os.path.join(DRIVER_DIR, name + ".py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


DISPLAY = _load_sibling("python_display")
CHARTS = _load_sibling("python_charts")
MAGICS = _load_sibling("python_magics")


# ---------------------------------------------------------------- control channel


def _stash_fd(fd):
    """Move fd to a high, close-on-exec number so user code and its children can't hit it."""
    try:
        new = fcntl.fcntl(fd, fcntl.F_DUPFD, STASH_FD_MIN)
    except OSError:
        new = os.dup(fd)
    os.set_inheritable(new, False)
    os.close(fd)
    return new


class Channel:
    def __init__(self, in_fd, out_fd):
        self._reader = os.fdopen(_stash_fd(in_fd), "rb")
        self._out_fd = _stash_fd(out_fd)

    def receive(self):
        """Next request dict; None at EOF (the daemon went away)."""
        while True:
            line = self._reader.readline()
            if not line:
                return None
            if line.strip():
                return _parse_request(line)

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


# ---------------------------------------------------------------- text helpers


def cap_text(text, limit=MAX_TEXT_CHARS):
    """Keep head and tail so a reply line stays bounded but both ends stay readable."""
    if len(text) <= limit:
        return text
    half = limit // 2
    dropped = len(text) - 2 * half
    return f"{text[:half]}\n... [{dropped} characters truncated] ...\n{text[-half:]}"


def clean_text(text, limit=MAX_TEXT_CHARS):
    # Lone surrogates (surrogateescape'd bytes) would make the JSON unencodable further up.
    return cap_text(text, limit).encode("utf-8", "backslashreplace").decode("utf-8")


def _safe_str(exc):
    try:
        return str(exc)
    except Exception:
        return f"<unprintable {type(exc).__name__}>"


# ---------------------------------------------------------------- errors and tracebacks


def _is_driver_frame(tb):
    # This file and its helper modules (magics, display) are the driver's.
    return os.path.dirname(os.path.abspath(tb.tb_frame.f_code.co_filename)) == DRIVER_DIR


def _user_traceback(tb):
    """User code's frames only: from its first cell frame on, without the driver's frames (a
    magic's between two cells, a KeyboardInterrupt's signal handler at the end)."""
    entries = []
    cursor = tb
    while cursor is not None and not cursor.tb_frame.f_code.co_filename.startswith(CELL_PREFIX):
        cursor = cursor.tb_next
    if cursor is None:
        cursor = tb
    while cursor is not None:
        if not _is_driver_frame(cursor):
            entries.append(cursor)
        cursor = cursor.tb_next
    rebuilt = None
    for entry in reversed(entries):
        rebuilt = types.TracebackType(rebuilt, entry.tb_frame, entry.tb_lasti, entry.tb_lineno)
    return rebuilt


def error_from_exception(exc, with_traceback=True):
    if with_traceback:
        lines = traceback.format_exception(type(exc), exc, _user_traceback(exc.__traceback__))
    else:
        lines = traceback.format_exception_only(type(exc), exc)
    return {
        "ename": type(exc).__name__,
        "evalue": clean_text(_safe_str(exc)),
        "traceback": clean_text("".join(lines).rstrip("\n")),
    }


def error_reply(request_id, ename, evalue):
    return {
        "id": request_id,
        "value": None,
        "outputs": [],
        "error": {"ename": ename, "evalue": evalue, "traceback": f"{ename}: {evalue}"},
    }


# ---------------------------------------------------------------- execution


class State:
    running = False
    loop = None


STATE = State()


def on_sigint(signum, frame):
    # Idle SIGINTs are ignored; during a run the interrupt lands wherever user code is.
    if STATE.running:
        raise KeyboardInterrupt


def make_namespace():
    module = types.ModuleType("__main__")
    module.__dict__["__builtins__"] = builtins
    # Pickle, multiprocessing and friends look classes up in sys.modules["__main__"].
    sys.modules["__main__"] = module
    return module.__dict__


def _run_coroutine(coroutine):
    import asyncio

    if STATE.loop is None or STATE.loop.is_closed():
        STATE.loop = asyncio.new_event_loop()
    task = STATE.loop.create_task(coroutine)
    try:
        return STATE.loop.run_until_complete(task)
    except BaseException:
        if not task.done():
            task.cancel()
            try:
                STATE.loop.run_until_complete(task)
            except BaseException:
                pass
        raise


def _evaluate(code_object, namespace):
    result = eval(code_object, namespace)
    if code_object.co_flags & CO_COROUTINE:
        return _run_coroutine(result)
    return result


def dedent_cell(source):
    """Code sent indented as a whole (a cell embedded in a string) runs, as in IPython."""
    first = next((line for line in source.splitlines() if line.strip()), "")
    return textwrap.dedent(source) if first[:1] in (" ", "\t") else source


class Interpreter:
    def __init__(self, display):
        self.namespace = make_namespace()
        self.count = 0
        self.display = display
        builtins.__corral__ = MAGICS.Shell(self.namespace, self.run_source, display.display_raw)
        builtins.display = display.display

    def _parse(self, source, filename):
        flags = ast.PyCF_ONLY_AST | TOP_LEVEL_AWAIT
        try:
            return compile(source, filename, "exec", flags, dont_inherit=True)
        except SyntaxError:
            # Not Python as written: maybe `!cmd` / `%magic` lines (plain Python is never rewritten).
            transformed = MAGICS.transform(source)
            if transformed == source:
                raise
            return compile(transformed, filename, "exec", flags, dont_inherit=True)

    def compile_cell(self, source):
        """(statements, final expression) code objects; the expression's value is the run's value."""
        self.count += 1
        filename = f"{CELL_PREFIX}{self.count}>"
        source = dedent_cell(source)
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        tree = self._parse(source, filename)
        final = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            final = ast.Expression(tree.body.pop().value)
        statements = compile(tree, filename, "exec", TOP_LEVEL_AWAIT, dont_inherit=True) if tree.body else None
        expression = compile(final, filename, "eval", TOP_LEVEL_AWAIT, dont_inherit=True) if final else None
        return statements, expression

    def run_source(self, source):
        """Run source like a cell (for %time and friends); returns its final expression's value."""
        statements, expression = self.compile_cell(source)
        if statements is not None:
            _evaluate(statements, self.namespace)
        return _evaluate(expression, self.namespace) if expression is not None else None

    def run(self, source):
        """Run one cell: returns (value text or None, error dict or None); outputs go to display."""
        try:
            statements, expression = self.compile_cell(source)
        except (SyntaxError, ValueError, OverflowError, MemoryError, RecursionError) as exc:
            return None, error_from_exception(exc, with_traceback=False)
        try:
            if statements is not None:
                _evaluate(statements, self.namespace)
            value = _evaluate(expression, self.namespace) if expression is not None else None
            return (self.display.show(value, main=True) if value is not None else None), None
        except MAGICS.UsageError as exc:
            return None, error_from_exception(exc, with_traceback=False)
        except BaseException as exc:  # SystemExit and KeyboardInterrupt included: the driver lives on
            return None, error_from_exception(exc)
        finally:
            self.display.flush_figures()


def flush_std_streams():
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except Exception:
            pass  # closed or replaced by user code: nothing of ours to flush


def apply_env(env):
    """Set a run's environment variables; returns what to restore afterwards."""
    saved = {}
    if isinstance(env, dict):
        for key, value in env.items():
            if isinstance(key, str) and isinstance(value, str) and key and "=" not in key and "\0" not in key + value:
                saved[key] = os.environ.get(key)
                os.environ[key] = value
    return saved


def restore_env(saved):
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def handle(interpreter, request):
    request_id = request.get("id")
    if "bad" in request:
        return error_reply(request_id, "BadRequest", request["bad"])
    display = interpreter.display
    display.outputs = DISPLAY.Outputs()
    saved_env = apply_env(request.get("env"))
    if MAGICS.user_site_appeared():
        MAGICS.refresh_import_paths()  # something installed packages between runs
    try:
        try:
            STATE.running = True
            value, error = interpreter.run(request["code"])
        finally:
            STATE.running = False
    except KeyboardInterrupt:
        # The interrupt hit driver code after the user's code had finished.
        STATE.running = False
        value, error = None, {"ename": "KeyboardInterrupt", "evalue": "", "traceback": "KeyboardInterrupt"}
    finally:
        restore_env(saved_env)
        outputs, display.outputs = display.outputs, None
    flush_std_streams()
    return {"id": request_id, "value": value, "outputs": outputs.items, "error": error}


def configure_process():
    # Interactive-interpreter conventions: modules in the cwd are importable, argv is [''].
    if sys.path and sys.path[0] and os.path.abspath(sys.path[0]) == DRIVER_DIR:
        sys.path[0] = ""
    elif not sys.path or sys.path[0] != "":
        sys.path.insert(0, "")
    sys.argv[:] = [""]
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(line_buffering=True)  # output streams to the daemon as it happens
        except Exception:
            pass
    os.environ["MPLBACKEND"] = "Agg"
    warnings.filterwarnings("ignore", message="FigureCanvasAgg is non-interactive")
    warnings.filterwarnings("ignore", message="Matplotlib is currently using agg")


def main():
    channel = Channel(CTL_IN_FD, CTL_OUT_FD)
    signal.signal(signal.SIGINT, on_sigint)
    configure_process()
    display = DISPLAY.Display(CHARTS)
    DISPLAY.install_hooks(display)
    interpreter = Interpreter(display)
    channel.send({"ready": True, "pid": os.getpid(), "language": "python"})
    while True:
        request = channel.receive()
        if request is None:
            return
        channel.send(handle(interpreter, request))


if __name__ == "__main__":
    main()
