"""Rich results for the Python driver, like a notebook's: IPython's display protocol and figures.

Loaded by python_driver.py from its own directory. Every result is one output: a dict with the
formats the object offers (`text`, `html`, `markdown`, `svg`, `latex`, `json`, `png`, `jpeg`,
`chart`) and `main` (true for the cell's final expression). Outputs are bounded: text formats keep
their head and tail, images share one budget, and a run keeps at most MAX_OUTPUTS of them.

Stdlib only and Python >= 3.8: this file runs inside arbitrary sandbox images.
"""

import base64
import io
import json
import sys
import traceback

MAX_TEXT_CHARS = 64 * 1024
MAX_IMAGE_BYTES = 8 * 1024 * 1024  # base64 characters, for all of a run's images together
MAX_JSON_CHARS = 256 * 1024
MAX_OUTPUTS = 32

# (mime type, output key, the _repr_*_ method IPython's formatters call)
FORMATS = (
    ("text/html", "html", "_repr_html_"),
    ("text/markdown", "markdown", "_repr_markdown_"),
    ("image/svg+xml", "svg", "_repr_svg_"),
    ("image/png", "png", "_repr_png_"),
    ("image/jpeg", "jpeg", "_repr_jpeg_"),
    ("text/latex", "latex", "_repr_latex_"),
    ("application/json", "json", "_repr_json_"),
)
MIME_KEYS = dict((mime, key) for mime, key, _ in FORMATS)
MIME_KEYS["text/plain"] = "text"
TEXT_KEYS = ("text", "html", "markdown", "svg", "latex")
IMAGE_KEYS = ("png", "jpeg")


def cap_text(text, limit=MAX_TEXT_CHARS):
    """Head and tail with a marker, so an output stays bounded but both ends stay readable."""
    if len(text) > limit:
        half = limit // 2
        text = f"{text[:half]}\n... [{len(text) - 2 * half} characters truncated] ...\n{text[-half:]}"
    # Lone surrogates (surrogateescape'd bytes) would make the reply unencodable.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _note(message):
    sys.stderr.write(f"[corral] {message}\n")


class Outputs:
    """The outputs of one run, in order, within the budgets above."""

    def __init__(self):
        self.items = []
        self._image_chars = 0
        self._dropped = 0

    def add(self, output):
        if len(self.items) >= MAX_OUTPUTS:
            self._dropped += 1
            if self._dropped == 1:
                _note(f"more than {MAX_OUTPUTS} outputs in one run: the rest are dropped")
            return
        for key in IMAGE_KEYS:
            if key in output:
                size = len(output[key])
                if self._image_chars + size > MAX_IMAGE_BYTES:
                    _note(f"image dropped: this run's images exceed {MAX_IMAGE_BYTES} bytes")
                    del output[key]
                else:
                    self._image_chars += size
        if any(key != "main" for key in output):
            self.items.append(output)

    def main_text(self):
        for output in self.items:
            if output.get("main"):
                return output.get("text")
        return None


# ---------------------------------------------------------------- the display protocol


def _formatter(obj, name):
    """obj's bound _repr_*_ method, looked up on its type as IPython does: a class's own methods,
    or an object whose __getattr__ answers every name, are not formatters."""
    try:
        method = getattr(type(obj), name, None)
    except Exception:
        return None
    if method is None or not callable(method) or isinstance(obj, type):
        return None
    return lambda *args, **kwargs: method(obj, *args, **kwargs)


def _put(bundle, key, data):
    if data is None or key in bundle:
        return
    if isinstance(data, tuple) and len(data) == 2:  # (data, metadata), as IPython allows
        data = data[0]
    if key in TEXT_KEYS:
        if isinstance(data, bytes):
            data = data.decode("utf-8", "replace")
        if isinstance(data, str):
            bundle[key] = cap_text(data)
    elif key in IMAGE_KEYS:
        if isinstance(data, (bytes, bytearray)):
            bundle[key] = base64.b64encode(bytes(data)).decode("ascii")
        elif isinstance(data, str):
            bundle[key] = data.replace("\n", "")  # already base64, as IPython takes it
    elif key == "json":
        try:
            text = json.dumps(data, allow_nan=False, default=str)
        except (TypeError, ValueError):
            return
        if len(text) <= MAX_JSON_CHARS:
            bundle[key] = json.loads(text)
        else:
            _note(f"JSON output dropped: over {MAX_JSON_CHARS} characters")


def _call(obj, name, *args, **kwargs):
    method = _formatter(obj, name)
    if method is None:
        return None
    try:
        return method(*args, **kwargs)
    except Exception:
        _note(f"{type(obj).__name__}.{name} failed:\n{traceback.format_exc(limit=3)}")
        return None


def mime_bundle(obj):
    """Every format obj offers, keyed by our short names; text is repr(obj)."""
    bundle = {}
    got = _call(obj, "_repr_mimebundle_", include=None, exclude=None)
    if isinstance(got, tuple) and got:
        got = got[0]
    if isinstance(got, dict):
        for mime, key in MIME_KEYS.items():
            _put(bundle, key, got.get(mime))
    for _mime, key, name in FORMATS:
        if key not in bundle:
            _put(bundle, key, _call(obj, name))
    if "text" not in bundle:
        bundle["text"] = cap_text(repr(obj))
    return bundle


def raw_bundle(data):
    """A mime-type dict given to display(..., raw=True)."""
    bundle = {}
    if isinstance(data, dict):
        for mime, key in MIME_KEYS.items():
            _put(bundle, key, data.get(mime))
    return bundle


# ---------------------------------------------------------------- images and figures


def pil_png(value):
    """PNG bytes when value is a PIL image, else None."""
    image_module = sys.modules.get("PIL.Image")
    if image_module is None or not isinstance(value, image_module.Image):
        return None
    for image in (value, None):
        try:
            buffer = io.BytesIO()
            (image if image is not None else value.convert("RGBA")).save(buffer, format="PNG")
            return buffer.getvalue()
        except Exception:
            continue
    return None


def is_figure(value):
    figure_module = sys.modules.get("matplotlib.figure")
    return figure_module is not None and isinstance(value, figure_module.Figure)


def figure_output(figure, charts):
    """A figure as PNG (and its chart data); None if it cannot be drawn."""
    buffer = io.BytesIO()
    try:
        figure.savefig(buffer, format="png", bbox_inches="tight")
    except Exception:
        _note(f"could not render a figure:\n{traceback.format_exc(limit=5)}")
        return None
    output = {"main": False, "text": cap_text(repr(figure)), "png": base64.b64encode(buffer.getvalue()).decode()}
    chart = charts.chart(figure)  # after savefig: tick labels exist once the figure was drawn
    if chart is not None:
        output["chart"] = chart
    return output


class Display:
    """Turns values into outputs: the final expression, display() calls and open figures."""

    def __init__(self, charts):
        self._charts = charts
        self.outputs = None  # the current run's Outputs

    def show(self, value, main=False):
        """Record value as an output; returns its plain text (None for images and figures)."""
        outputs = self.outputs
        if outputs is None:
            return None
        if is_figure(value):
            self._show_figure(value)
            return None
        png = pil_png(value)
        if png is not None:
            outputs.add({"main": main, "png": base64.b64encode(png).decode("ascii")})
            return None
        bundle = mime_bundle(value)
        bundle["main"] = main
        outputs.add(bundle)
        return bundle.get("text")

    def _show_figure(self, figure):
        output = figure_output(figure, self._charts)
        if output is not None:
            self.outputs.add(output)
        pyplot = sys.modules.get("matplotlib.pyplot")
        if pyplot is not None:
            try:
                pyplot.close(figure)  # shown now: not again when the run ends
            except Exception:
                pass

    def display(self, *objs, **kwargs):
        """IPython's display(): each object becomes an output (raw=True takes mime dicts)."""
        for obj in objs:
            if kwargs.get("raw"):
                bundle = raw_bundle(obj)
                if bundle and self.outputs is not None:
                    bundle["main"] = False
                    self.outputs.add(bundle)
            else:
                self.show(obj)

    def display_raw(self, data):
        """A mime-type dict as an output (%%html, %%markdown)."""
        self.display(data, raw=True)

    def flush_figures(self):
        """Every open pyplot figure becomes an output and is closed, like a notebook's inline backend."""
        pyplot = sys.modules.get("matplotlib.pyplot")
        if pyplot is None or self.outputs is None:
            return
        try:
            numbers = list(pyplot.get_fignums())
        except Exception:
            return
        for number in numbers:
            output = figure_output(pyplot.figure(number), self._charts)
            if output is not None:
                self.outputs.add(output)
        pyplot.close("all")


# ---------------------------------------------------------------- patching libraries on import


class PostImportHooks:
    """A meta path finder that runs a callback on a module right after its first import."""

    def __init__(self, callbacks):
        self._callbacks = dict(callbacks)

    def find_spec(self, name, path=None, target=None):
        callback = self._callbacks.get(name)
        if callback is None:
            return None
        import importlib.util

        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        original = spec.loader.exec_module

        def exec_module(module):
            original(module)
            try:
                callback(module)
            except Exception:
                _note(f"could not adapt {name}:\n{traceback.format_exc(limit=3)}")

        spec.loader.exec_module = exec_module
        return spec


def install_hooks(display):
    """plt.show() shows the figures now (as Jupyter's inline backend does); IPython's display()
    records outputs instead of printing them (outside a kernel it would only print)."""

    def patch_pyplot(pyplot):
        def show(*args, **kwargs):
            display.flush_figures()

        show.__doc__ = pyplot.show.__doc__
        pyplot.show = show

    def patch_display(module):
        module.display = display.display

    hooks = PostImportHooks(
        {
            "matplotlib.pyplot": patch_pyplot,
            "IPython.core.display_functions": patch_display,
            "IPython.core.display": patch_display,
            "IPython.display": patch_display,
        }
    )
    sys.meta_path.insert(0, hooks)
