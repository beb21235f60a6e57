"""Corral Python interpreter driver: one persistent namespace, notebook-style runs.

Contract (see README.md next to this file): stdin is /dev/null, user output goes to stdout/stderr,
requests arrive as JSON lines on fd 3 and replies leave as JSON lines on fd 4.

Stdlib only and Python >= 3.8: this file runs inside arbitrary sandbox images.
"""

import ast
import base64
import builtins
import fcntl
import io
import json
import linecache
import os
import signal
import sys
import traceback
import types
import warnings

CTL_IN_FD = 3
CTL_OUT_FD = 4
# Far above the fds user code plausibly opens, closes or dup2()s over.
STASH_FD_MIN = 200
MAX_TEXT_CHARS = 64 * 1024
MAX_IMAGE_BYTES = 8 * 1024 * 1024
CELL_PREFIX = "<cell-"
CO_COROUTINE = 0x0080
TOP_LEVEL_AWAIT = getattr(ast, "PyCF_ALLOW_TOP_LEVEL_AWAIT", 0)
DRIVER_FILE = (lambda: None).__code__.co_filename


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
    return tb.tb_frame.f_code.co_filename == DRIVER_FILE


def _user_traceback(tb):
    """Drop the driver's (and asyncio's) outer frames: user code starts at its first cell frame."""
    cursor = tb
    while cursor is not None and not cursor.tb_frame.f_code.co_filename.startswith(CELL_PREFIX):
        cursor = cursor.tb_next
    if cursor is None:
        cursor = tb
        while cursor is not None and _is_driver_frame(cursor):
            cursor = cursor.tb_next
    _drop_driver_tail(cursor)
    return cursor


def _drop_driver_tail(tb):
    """A KeyboardInterrupt's innermost frame is the driver's signal handler: hide it."""
    last_user = None
    while tb is not None:
        if not _is_driver_frame(tb):
            last_user = tb
        tb = tb.tb_next
    if last_user is not None:
        last_user.tb_next = None


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
        "images": [],
        "error": {"ename": ename, "evalue": evalue, "traceback": f"{ename}: {evalue}"},
    }


# ---------------------------------------------------------------- rich output


class ImageSink:
    """Collects PNGs for one run, bounded so a reply stays well under the daemon's frame limit."""

    def __init__(self):
        self.images = []
        self._size = 0

    def add(self, png):
        encoded = base64.b64encode(png).decode("ascii")
        if self._size + len(encoded) > MAX_IMAGE_BYTES:
            sys.stderr.write(f"[corral] image dropped: this run's images exceed {MAX_IMAGE_BYTES} bytes\n")
            return
        self._size += len(encoded)
        self.images.append(encoded)


def flush_figures(sink):
    """Every open pyplot figure becomes a PNG and is closed, like a notebook's inline backend."""
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is None:
        return
    try:
        numbers = list(pyplot.get_fignums())
    except Exception:
        return
    for number in numbers:
        buffer = io.BytesIO()
        try:
            pyplot.figure(number).savefig(buffer, format="png", bbox_inches="tight")
        except Exception:
            sys.stderr.write(f"[corral] could not render figure {number}:\n{traceback.format_exc()}")
            continue
        sink.add(buffer.getvalue())
    pyplot.close("all")


def _wrap_pyplot_show(pyplot):
    """plt.show() must end the current figure (as in Jupyter) so the next plot starts afresh."""

    def show(*args, **kwargs):
        if STATE.sink is not None:
            flush_figures(STATE.sink)

    show.__doc__ = pyplot.show.__doc__
    pyplot.show = show


class _PyplotImportHook:
    """Meta path finder that patches matplotlib.pyplot right after its first import."""

    def find_spec(self, name, path=None, target=None):
        if name != "matplotlib.pyplot":
            return None
        sys.meta_path.remove(self)
        try:
            import importlib.util

            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        original = spec.loader.exec_module

        def exec_module(module):
            original(module)
            _wrap_pyplot_show(module)

        spec.loader.exec_module = exec_module
        return spec


def setup_matplotlib():
    os.environ["MPLBACKEND"] = "Agg"
    warnings.filterwarnings("ignore", message="FigureCanvasAgg is non-interactive")
    warnings.filterwarnings("ignore", message="Matplotlib is currently using agg")
    sys.meta_path.insert(0, _PyplotImportHook())


def image_png(value):
    """PNG bytes when value is a PIL image, else None."""
    image_module = sys.modules.get("PIL.Image")
    if image_module is None or not isinstance(value, image_module.Image):
        return None
    for candidate in (value, None):
        try:
            image = candidate if candidate is not None else value.convert("RGBA")
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            return buffer.getvalue()
        except Exception:
            continue
    return None


# ---------------------------------------------------------------- execution


class State:
    running = False
    sink = None
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


class Interpreter:
    def __init__(self):
        self.namespace = make_namespace()
        self.count = 0

    def compile_cell(self, source):
        """(statements, final expression) code objects; the expression's value is the run's value."""
        self.count += 1
        filename = f"{CELL_PREFIX}{self.count}>"
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        flags = ast.PyCF_ONLY_AST | TOP_LEVEL_AWAIT
        tree = compile(source, filename, "exec", flags, dont_inherit=True)
        final = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            final = ast.Expression(tree.body.pop().value)
        statements = compile(tree, filename, "exec", TOP_LEVEL_AWAIT, dont_inherit=True) if tree.body else None
        expression = compile(final, filename, "eval", TOP_LEVEL_AWAIT, dont_inherit=True) if final else None
        return statements, expression

    def run(self, source, sink):
        """Run one cell: returns (value text or None, error dict or None)."""
        try:
            statements, expression = self.compile_cell(source)
        except (SyntaxError, ValueError, OverflowError, MemoryError, RecursionError) as exc:
            return None, error_from_exception(exc, with_traceback=False)
        try:
            if statements is not None:
                _evaluate(statements, self.namespace)
            value = _evaluate(expression, self.namespace) if expression is not None else None
            return self.render(value, sink), None
        except BaseException as exc:  # SystemExit and KeyboardInterrupt included: the driver lives on
            return None, error_from_exception(exc)
        finally:
            flush_figures(sink)

    def render(self, value, sink):
        if value is None:
            return None
        png = image_png(value)
        if png is not None:
            sink.add(png)
            return None
        return clean_text(repr(value))


def flush_std_streams():
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except Exception:
            pass  # closed or replaced by user code: nothing of ours to flush


def handle(interpreter, request):
    request_id = request.get("id")
    if "bad" in request:
        return error_reply(request_id, "BadRequest", request["bad"])
    sink = ImageSink()
    STATE.sink = sink
    try:
        try:
            STATE.running = True
            value, error = interpreter.run(request["code"], sink)
        finally:
            STATE.running = False
    except KeyboardInterrupt:
        # The interrupt hit driver code after the user's code had finished.
        STATE.running = False
        value, error = None, {"ename": "KeyboardInterrupt", "evalue": "", "traceback": "KeyboardInterrupt"}
    finally:
        STATE.sink = None
    flush_std_streams()
    return {"id": request_id, "value": value, "images": sink.images, "error": error}


def configure_process():
    # Interactive-interpreter conventions: modules in the cwd are importable, argv is [''].
    driver_dir = os.path.dirname(os.path.abspath(DRIVER_FILE))
    if sys.path and sys.path[0] and os.path.abspath(sys.path[0]) == driver_dir:
        sys.path[0] = ""
    elif not sys.path or sys.path[0] != "":
        sys.path.insert(0, "")
    sys.argv[:] = [""]
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(line_buffering=True)  # output streams to the daemon as it happens
        except Exception:
            pass
    setup_matplotlib()


def main():
    channel = Channel(CTL_IN_FD, CTL_OUT_FD)
    signal.signal(signal.SIGINT, on_sigint)
    configure_process()
    interpreter = Interpreter()
    channel.send({"ready": True, "pid": os.getpid(), "language": "python"})
    while True:
        request = channel.receive()
        if request is None:
            return
        channel.send(handle(interpreter, request))


if __name__ == "__main__":
    main()
