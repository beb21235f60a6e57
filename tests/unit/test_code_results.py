"""How the agent's rich outputs become a run_code result: results, image blocks, bounds."""

from __future__ import annotations

import base64

from corral.service.execution import shape_outputs

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 20
JPEG = b"\xff\xd8\xff" + b"\x00" * 20


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_images_become_image_blocks_named_by_index() -> None:
    raw = [
        {"main": False, "text": "<Figure>", "png": b64(PNG), "chart": {"type": "bar"}},
        {"main": False, "jpeg": b64(JPEG)},
    ]
    results, images, left_out = shape_outputs(raw, 1000, 10_000)
    assert results == [{"text": "<Figure>", "chart": {"type": "bar"}, "image": 0}, {"image": 1}]
    assert images == [(PNG, "image/png"), (JPEG, "image/jpeg")] and left_out == 0


def test_the_main_text_is_not_repeated_but_its_other_formats_are_kept() -> None:
    raw = [{"main": True, "text": "plain"}, {"main": True, "text": "table", "html": "<table/>"}]
    results, images, _ = shape_outputs(raw, 1000, 10_000)
    assert results == [{"main": True, "html": "<table/>"}] and images == []


def test_what_is_not_an_image_of_its_kind_is_dropped() -> None:
    raw = [{"png": b64(JPEG)}, {"png": "not base64!"}, {"jpeg": b64(PNG)}, "junk", {"text": 5}]
    assert shape_outputs(raw, 1000, 10_000) == ([], [], 0)


def test_deeply_nested_json_is_dropped() -> None:
    deep: list[object] = []
    cursor = deep
    for _ in range(100):
        cursor.append([])
        cursor = cursor[0]  # type: ignore[assignment]
    results, _, _ = shape_outputs([{"text": "t", "json": deep}, {"json": [[1]]}], 1000, 10_000)
    assert results == [{"text": "t"}, {"json": [[1]]}]


def test_results_stay_within_the_budget() -> None:
    results, _, _ = shape_outputs([{"html": "x" * 5000}], 1000, 10_000)
    assert len(results[0]["html"]) < 1100 and "characters dropped" in results[0]["html"]
    many = [{"text": f"{k}" * 900} for k in range(10)]
    results, _, left_out = shape_outputs(many, 1000, 10_000)
    assert len(results) == 4 and left_out == 6  # 4 x text_limit of text in all
    figure = {"png": b64(PNG), "chart": {"points": list(range(2000))}}
    results, images, left_out = shape_outputs([figure], 1000, 10_000)
    assert results == [{"image": 0, "omitted": ["chart"]}] and len(images) == 1 and left_out == 0
