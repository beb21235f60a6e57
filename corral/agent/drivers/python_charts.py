"""The data behind a matplotlib figure, as structured content (the shape E2B's charts have).

Loaded by python_driver.py from its own directory. `chart(figure)` returns, for one axes:
  {"type": "line"|"scatter"|"bar"|"pie"|"unknown", "title", "x_label", "y_label", "elements"}
with elements
  line, scatter: {"label", "points": [[x, y], ...]}
  bar:           {"label" (the category), "value", "group" (the series)}
  pie:           {"label", "angle" (degrees), "radius"}
and for a figure of several axes {"type": "superchart", "title", "elements": [chart, ...]}.
Series keep at most MAX_POINTS points (evenly sampled; the element then says "truncated": true).
Call it after the figure was drawn (savefig): tick labels only exist then.

Stdlib only and Python >= 3.8 (matplotlib is only used when the user code imported it).
"""

import datetime
import math
import sys

MAX_AXES = 16
MAX_SERIES = 50
MAX_POINTS = 1000
MAX_BARS = 1000


def _text(value):
    if value is None:
        return None
    text = str(value).strip()
    return text[:500] if text else None


def _series_label(artist):
    label = _text(artist.get_label())
    return None if label is None or label.startswith("_") else label  # "_child0": no legend label


def scalar(value):
    """A JSON value for one data point: numbers (non-finite -> null), dates as ISO text, else str."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            value = value.item()
        except Exception:
            pass
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (int, float)):
        return scalar(float(value))
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return _text(value)
    return number if math.isfinite(number) else None


def _sample(items):
    if len(items) <= MAX_POINTS:
        return items, False
    step = len(items) / float(MAX_POINTS)
    return [items[int(k * step)] for k in range(MAX_POINTS)], True


def _points(xs, ys):
    points = [[scalar(x), scalar(y)] for x, y in zip(list(xs), list(ys))]
    return _sample(points)


def _series(label, xs, ys):
    points, truncated = _points(xs, ys)
    element = {"label": label, "points": points}
    if truncated:
        element["truncated"] = True
    return element


def _lines(axes):
    return [_series(_series_label(line), line.get_xdata(), line.get_ydata()) for line in axes.get_lines()[:MAX_SERIES]]


def _scatters(axes):
    collections = sys.modules.get("matplotlib.collections")
    if collections is None:
        return []
    elements = []
    for collection in axes.collections:
        if isinstance(collection, collections.PathCollection) and len(elements) < MAX_SERIES:
            offsets = collection.get_offsets()
            elements.append(_series(_series_label(collection), [p[0] for p in offsets], [p[1] for p in offsets]))
    return elements


def _tick_labels(axis):
    labels = {}
    try:
        for position, tick in zip(axis.get_ticklocs(), axis.get_ticklabels()):
            if tick.get_text():
                labels[float(position)] = tick.get_text()
    except Exception:
        pass
    return labels


def _category(ticks, center, half_width):
    best = None
    for position, text in ticks.items():
        distance = abs(position - center)
        if distance <= half_width + 1e-9 and (best is None or distance < best[0]):
            best = (distance, text)
    return best[1] if best else _text(scalar(round(center, 6)))


def _bars(axes):
    container_module = sys.modules.get("matplotlib.container")
    if container_module is None:
        return []
    x_ticks, y_ticks = _tick_labels(axes.xaxis), _tick_labels(axes.yaxis)
    elements = []
    for container in axes.containers:
        if not isinstance(container, container_module.BarContainer):
            continue
        horizontal = getattr(container, "orientation", "vertical") == "horizontal"
        group = _series_label(container)
        for bar in container.patches:
            if len(elements) >= MAX_BARS:
                return elements
            if horizontal:
                label = _category(y_ticks, bar.get_y() + bar.get_height() / 2.0, abs(bar.get_height()) / 2.0)
                value = bar.get_width()
            else:
                label = _category(x_ticks, bar.get_x() + bar.get_width() / 2.0, abs(bar.get_width()) / 2.0)
                value = bar.get_height()
            elements.append({"label": label, "value": scalar(value), "group": group})
    return elements


def _wedges(axes):
    patches = sys.modules.get("matplotlib.patches")
    if patches is None:
        return []
    return [
        {"label": _text(patch.get_label()), "angle": scalar(round(patch.theta2 - patch.theta1, 6)),
         "radius": scalar(patch.r)}
        for patch in axes.patches
        if isinstance(patch, patches.Wedge)
    ][:MAX_BARS]


def axes_chart(axes):
    chart = {
        "type": "unknown",
        "title": _text(axes.get_title()),
        "x_label": _text(axes.get_xlabel()),
        "y_label": _text(axes.get_ylabel()),
        "elements": [],
    }
    for kind, extract in (("bar", _bars), ("pie", _wedges), ("line", _lines), ("scatter", _scatters)):
        elements = extract(axes)
        if elements:
            chart["type"], chart["elements"] = kind, elements
            break
    return chart


def chart(figure):
    """The chart data of a figure; None if it has no axes or the extraction fails."""
    try:
        axes = [a for a in figure.get_axes() if not hasattr(a, "_colorbar")][:MAX_AXES]
        if not axes:
            return None
        if len(axes) == 1:
            return axes_chart(axes[0])
        title = figure._suptitle.get_text() if getattr(figure, "_suptitle", None) is not None else None
        return {"type": "superchart", "title": _text(title), "elements": [axes_chart(a) for a in axes]}
    except Exception:
        return None
