"""python_driver.py: rich outputs through IPython's display protocol, and matplotlib chart data."""

from __future__ import annotations

import base64

import pytest

from .conftest import Driver, driver_python_has

needs_matplotlib = pytest.mark.skipif(
    not driver_python_has("matplotlib"),
    reason="matplotlib is not installed for the driver's Python (the Docker tier covers charts in the image)",
)

RICH_CLASS = """
class Rich:
    def _repr_html_(self):
        return '<b>rich</b>'
    def _repr_markdown_(self):
        return '**rich**'
    def _repr_json_(self):
        return {'k': [1, 2]}
    def _repr_png_(self):
        return b'\\x89PNG\\r\\n\\x1a\\nfake'
    def __repr__(self):
        return 'Rich()'
"""


def test_the_final_value_carries_every_format_it_offers(py: Driver) -> None:
    reply = py.run(RICH_CLASS + "Rich()")
    assert reply["value"] == "Rich()"
    [output] = reply["outputs"]
    assert output["main"] is True
    assert output["text"] == "Rich()" and output["html"] == "<b>rich</b>" and output["markdown"] == "**rich**"
    assert output["json"] == {"k": [1, 2]}
    assert base64.b64decode(output["png"]) == b"\x89PNG\r\n\x1a\nfake"


def test_mimebundle_wins_and_broken_formatters_are_skipped(py: Driver) -> None:
    code = (
        "class Bundle:\n"
        "    def _repr_mimebundle_(self, include=None, exclude=None):\n"
        "        return {'text/plain': 'plain', 'image/svg+xml': '<svg/>'}, {}\n"
        "    def _repr_html_(self):\n"
        "        raise RuntimeError('broken')\n"
        "Bundle()"
    )
    reply = py.run(code)
    assert reply["error"] is None
    assert reply["outputs"] == [{"text": "plain", "svg": "<svg/>", "main": True}]
    assert py.stderr.wait_for("_repr_html_ failed")


def test_formatters_are_looked_up_on_the_type_not_by_getattr(py: Driver) -> None:
    code = "class Anything:\n    def __getattr__(self, name):\n        return lambda *a, **k: 'junk'\nAnything()"
    [output] = py.run(code)["outputs"]
    assert set(output) == {"text", "main"}


def test_display_adds_outputs_before_the_final_value(py: Driver) -> None:
    reply = py.run(RICH_CLASS + "display(Rich(), 7)\ndisplay({'text/html': '<i>raw</i>'}, raw=True)\n'end'")
    kinds = [(o.get("html"), o.get("text"), o["main"]) for o in reply["outputs"]]
    assert kinds == [("<b>rich</b>", "Rich()", False), (None, "7", False), ("<i>raw</i>", None, False),
                     (None, "'end'", True)]


def test_html_and_markdown_cell_magics_are_outputs(py: Driver) -> None:
    assert py.run("%%html\n<p>hi</p>")["outputs"][0]["html"] == "<p>hi</p>"
    assert py.run("%%markdown\n# Title")["outputs"][0]["markdown"] == "# Title"


def test_outputs_are_bounded(py: Driver) -> None:
    reply = py.run("for k in range(50):\n    display(k)")
    assert len(reply["outputs"]) == 32
    assert py.stderr.wait_for("more than 32 outputs")
    huge = py.run("class Big:\n    def _repr_html_(self):\n        return 'x' * 1_000_000\nBig()")
    assert len(huge["outputs"][0]["html"]) < 70_000
    assert "characters truncated" in huge["outputs"][0]["html"]


@needs_matplotlib
def test_a_bar_chart_comes_with_its_data(py: Driver) -> None:
    code = (
        "import matplotlib.pyplot as plt\n"
        "plt.bar(['A', 'B', 'C'], [3, 5, 2], label='sales')\n"
        "plt.title('Sales'); plt.xlabel('region'); plt.ylabel('units')\n"
        "plt.show()"
    )
    [output] = py.run(code)["outputs"]
    assert output["png"]
    assert output["chart"] == {
        "type": "bar", "title": "Sales", "x_label": "region", "y_label": "units",
        "elements": [{"label": "A", "value": 3, "group": "sales"}, {"label": "B", "value": 5, "group": "sales"},
                     {"label": "C", "value": 2, "group": "sales"}],
    }


@needs_matplotlib
def test_line_scatter_pie_and_several_axes(py: Driver) -> None:
    code = (
        "import matplotlib.pyplot as plt\n"
        "fig, (a, b, c) = plt.subplots(1, 3)\n"
        "fig.suptitle('three')\n"
        "a.plot([0, 1, 2], [1.5, float('nan'), 3], label='series')\n"
        "b.scatter([1, 2], [3, 4])\n"
        "c.pie([1, 3], labels=['p', 'q'])\n"
        "None"
    )
    [output] = py.run(code)["outputs"]
    chart = output["chart"]
    assert chart["type"] == "superchart" and chart["title"] == "three"
    line, scatter, pie = chart["elements"]
    assert line["type"] == "line" and line["elements"] == [{"label": "series", "points": [[0, 1.5], [1, None], [2, 3]]}]
    assert scatter["type"] == "scatter" and scatter["elements"][0]["points"] == [[1.0, 3.0], [2.0, 4.0]]
    assert pie["type"] == "pie" and [(w["label"], w["angle"]) for w in pie["elements"]] == [("p", 90.0), ("q", 270.0)]


@needs_matplotlib
def test_long_series_are_sampled(py: Driver) -> None:
    reply = py.run("import matplotlib.pyplot as plt\nplt.plot(range(5000))\nNone")
    element = reply["outputs"][0]["chart"]["elements"][0]
    assert len(element["points"]) == 1000 and element["truncated"] is True
