"""The evaluation pages: examples drawn truthfully, learning curves as inline SVG, the alignment page."""

from __future__ import annotations

import base64
import io
import math
import re
from typing import Any

import numpy as np
import pytest
from PIL import Image

from components.evaluate import evaluate_images
from components.evaluate.charts import line_chart
from components.evaluate.report import (
    GT_COLOUR,
    PRED_COLOUR,
    _pick,
    outline,
    render_recognition_report,
    render_report,
)
from components.evaluate.result import EvaluationResult
from components.schemas import Instance, MediaRecord, Query
from tests.evaluate.saco_cases import CaseOptions, image_case, write_image_case
from tests.ingest.factory import box_mask, rle

SIZE = 64
GREY, YELLOW = (128, 128, 128), (240, 220, 30)
SQUARE = (20, 20, 44, 44)  # x0, y0, x1, y1 of the yellow object in every image


def record(index: int, positives: int = 2, negatives: int = 1) -> MediaRecord:
    """A grey image with one yellow square; ``positives`` queries find it, ``negatives`` are absent."""
    pixels = np.full((SIZE, SIZE, 3), GREY, np.uint8)
    x0, y0, x1, y1 = SQUARE
    pixels[y0:y1, x0:x1] = YELLOW
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    counts = rle(box_mask(SIZE, SIZE, *SQUARE))["counts"]
    queries = [
        Query(
            query_id=f"img{index}:{n}",
            origin_id=str(100 * index + n),
            noun_phrase=f"large yellow square {n}" if n < positives else f"blue circle {n}",
            positive=n < positives,
            instances=[Instance(object_id=0, boxes=[None], masks=[counts])] if n < positives else [],
        )
        for n in range(positives + negatives)
    ]
    return MediaRecord(
        f"img{index}", "test", "image", f"img{index}.png", SIZE, SIZE, [buf.getvalue()], queries
    )


def prediction(pair: str, score: float) -> dict[str, Any]:
    return {"image_id": int(pair), "score": score, "segmentation": rle(box_mask(SIZE, SIZE, *SQUARE))}


def history(steps: int = 300, evaluations: bool = True) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    return {
        "stage": "pretrain",
        "steps": [
            {
                "step": s,
                "loss": {"total": 2 * math.exp(-s / 100) + rng.random(), "presence": 0.7 + rng.random()},
                "lr": {"vision": 1e-5 * min(1, s / 30), "text": 1e-4},
                "seconds": 0.3,
            }
            for s in range(1, steps + 1)
        ],
        "evaluations": [
            {"step": s, "recognition_AUC": 0.6, "by_length": {"1": 0.55, "2": 0.7}} for s in (100, 200)
        ]
        if evaluations
        else [],
    }


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> EvaluationResult:
    gts, preds = image_case(np.random.default_rng(7), CaseOptions(pairs=6))
    gt_paths, pred_path = write_image_case(tmp_path_factory.mktemp("case"), gts, preds)
    return evaluate_images(gt_paths, pred_path, workers=1)


def pngs(page: str) -> list[np.ndarray]:
    return [
        np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))
        for data in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)
    ]


def test_examples_come_from_distinct_images_and_mix_in_a_negative() -> None:
    records = [record(i) for i in range(6)]
    picked = _pick(records, 4)
    assert len({r.media_id for r, _ in picked}) == 4
    assert any(q.positive for _, q in picked) and any(not q.positive for _, q in picked)
    assert picked == _pick(records, 4)  # deterministic
    assert [q.positive for _, q in _pick(records, 1)] == [True]


def test_images_repeat_only_when_there_are_fewer_images_than_examples() -> None:
    picked = _pick([record(0), record(1)], 4)
    assert [r.media_id for r, _ in picked] == ["img0", "img1", "img0", "img1"]
    assert len({q.query_id for _, q in picked}) == 4 and any(not q.positive for _, q in picked)
    only_positives = _pick([record(i, negatives=0) for i in range(3)], 3)
    assert len(only_positives) == 3  # no negatives to show: positives fill their places


def test_an_outline_leaves_the_object_pixels_unchanged() -> None:
    image = np.full((SIZE, SIZE, 3), GREY, np.uint8)
    mask = box_mask(SIZE, SIZE, *SQUARE).astype(bool)
    image[mask] = YELLOW
    before = image.copy()
    outline(image, mask, GT_COLOUR[1])
    assert (image[mask] == before[mask]).all()
    ring = (image != before).any(axis=2)
    assert ring.sum() > 4 * 20 and (image[ring] == GT_COLOUR[1]).all()
    dashed = before.copy()
    outline(dashed, mask, PRED_COLOUR[1], dashed=True)
    assert (dashed[mask] == before[mask]).all()
    assert 0 < (dashed != before).any(axis=2).sum() < ring.sum()  # gaps show what is drawn below


def test_the_page_draws_outlines_and_captions_that_say_what_happened(result: EvaluationResult) -> None:
    records = [record(i) for i in range(3)]
    predictions = [prediction("0", 0.9), prediction("2", 0.3)]  # pair 2 is img0's negative
    page = render_report(result, {}, records, predictions, "ckpt", examples=3)
    assert f"{GT_COLOUR[0]} outline: ground truth, {PRED_COLOUR[0]} dashed outline: predictions" in page
    assert "large yellow square 0</b>: present; 1 true, 1 predicted; best score 0.90" in page
    assert re.search(r"blue circle \d</b>: absent; 0 true, 0 predicted", page)
    images = pngs(page)
    assert len(images) == 3
    for drawn in images:
        h, w, _ = drawn.shape
        centre = drawn[h // 2 - 5 : h // 2 + 5, w // 2 - 5 : w // 2 + 5].reshape(-1, 3).astype(int)
        assert np.abs(centre - YELLOW).max() < 8  # the yellow object still looks yellow
    first = images[0].reshape(-1, 3)
    assert (first == GT_COLOUR[1]).all(axis=1).any() and (first == PRED_COLOUR[1]).all(axis=1).any()


def test_learning_curves_are_inline_svg_charts(result: EvaluationResult) -> None:
    page = render_report(result, {}, [], [], "ckpt", examples=0, history=history())
    for title in ("loss: total", "loss: presence", "learning rate", "recognition AUC at checkpoints"):
        assert f">{title}</text>" in page
    assert page.count("<svg") == 4
    assert "running mean over the last 6 steps" in page and "chance" in page and "stroke-dasharray" in page
    assert "<script" not in page and 'src="http' not in page
    assert "No training history" not in page


def test_without_history_or_evaluations_the_page_says_so(result: EvaluationResult) -> None:
    page = render_report(result, {}, [], [], "ckpt", examples=0)
    assert "No training history was recorded for this checkpoint" in page and "<svg" not in page
    page = render_report(result, {}, [], [], "ckpt", examples=0, history=history(evaluations=False))
    assert page.count("<svg") == 3 and "recognition AUC at checkpoints" not in page


def test_recognition_report_shows_the_auc_by_phrase_length() -> None:
    recognition = {
        "recognition_AUC": 0.8431,
        "by_length": {"2": 0.79, "1": 0.64},
        "pairs": 60,
        "positive_pairs": 24,
    }
    page = render_recognition_report(recognition, "s3://b/pretrain/ckpt", history())
    assert "recognition AUC <b>0.843</b>" in page and "24 present, 36 absent" in page
    assert "0.5 is chance, 1 a perfect ranking" in page
    assert page.index("<tr><td>1</td><td>0.640</td></tr>") < page.index("<tr><td>2</td><td>0.790</td></tr>")
    assert "<svg" in page
    assert "No training history" in render_recognition_report(recognition, "ckpt")


def test_a_chart_leaves_out_non_finite_points_and_labels_round_ticks() -> None:
    svg = line_chart("loss", {"a": [(1, 1.0), (2, math.nan), (3, 0.5)], "empty": []})
    assert svg.count("<polyline") == 2  # the axes and series "a"; "empty" has nothing to draw
    assert ">a</text>" in svg and ">empty</text>" not in svg and "nan" not in svg
    assert re.findall(r'text-anchor="end">([^<]+)</text>', svg) == ["0.5", "0.6", "0.7", "0.8", "0.9", "1"]
    assert line_chart("nothing", {"a": [(1, math.inf)]}) == ""
