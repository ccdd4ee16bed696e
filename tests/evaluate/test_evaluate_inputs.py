"""Bad input gives one clear error naming the file and the record; odd but valid input works."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pycocotools.mask as mask_utils
import pytest

from components.errors import ConfigError, DataError
from components.evaluate import evaluate_images, evaluate_videos
from components.masks import compressed_rles_ok, empty_rle, polygon_ok, uncompressed_rle_ok
from tests.evaluate.saco_cases import rle, write_json
from tests.evaluate.test_evaluate_edge_cases import A, B, gt_file, pred, rect, video_gt


@pytest.fixture
def gt(tmp_path: Path) -> Path:
    return gt_file(tmp_path / "gt.json", {1: [{"segmentation": A}], 2: []})


def _error(tmp_path: Path, gt: Path, preds: Any, error: type[Exception] = DataError) -> str:
    path = tmp_path / "pred.json"
    path.write_text(preds if isinstance(preds, str) else json.dumps(preds))
    with pytest.raises(error) as info:
        evaluate_images([gt], path)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_prediction_for_an_unknown_pair(tmp_path: Path, gt: Path) -> None:
    message = _error(tmp_path, gt, [pred(1, 0.9, A), pred(999, 0.9, A)])
    assert "pred.json" in message and "prediction #1" in message and "999" in message


@pytest.mark.parametrize(
    ("counts", "why"),
    [
        (A["counts"][:-1], "truncated: the last character asks for more"),
        (A["counts"] + "~", "a character outside '0'..'o'"),
        (rect(0, 5, 0, 5, h=10, w=11)["counts"], "run lengths that do not add up to 10 x 10"),
        ("zz", "an endless group that makes pycocotools hang"),
        ("1" * 12, "a negative run"),
    ],
)
def test_malformed_rle(tmp_path: Path, gt: Path, counts: str, why: str) -> None:
    bad = {"size": [10, 10], "counts": counts}
    message = _error(tmp_path, gt, [pred(1, 0.9, A), pred(2, 0.2, bad)])
    assert "prediction #1" in message and "malformed RLE" in message, why


def test_malformed_uncompressed_rle_and_polygon_prediction(tmp_path: Path, gt: Path) -> None:
    message = _error(tmp_path, gt, [pred(1, 0.9, {"size": [10, 10], "counts": [50, 10]})])
    assert "prediction #0" in message and "run lengths" in message
    message = _error(tmp_path, gt, [pred(1, 0.9, [[0, 0, 5, 0, 5, 5]])])  # type: ignore[arg-type]
    assert "prediction #0" in message and "polygon" in message


def test_mask_size_differs_from_image(tmp_path: Path, gt: Path) -> None:
    message = _error(tmp_path, gt, [pred(1, 0.9, rect(0, 2, 0, 2, h=8, w=10))])
    assert "prediction #0" in message and "[8, 10]" in message and "[10, 10]" in message


def test_nan_score(tmp_path: Path, gt: Path) -> None:
    text = json.dumps([pred(1, 0.9, A), pred(1, float("nan"), A)])  # json writes NaN
    message = _error(tmp_path, gt, text)
    assert "prediction #1 (image_id=1): score" in message and "finite" in message


def test_structural_errors_name_the_record(tmp_path: Path, gt: Path) -> None:
    assert "prediction #0 (image_id=1): score" in _error(tmp_path, gt, [{"image_id": 1, "segmentation": A}])
    assert "expected a JSON list" in _error(tmp_path, gt, {"annotations": []})
    assert "not valid JSON" in _error(tmp_path, gt, "[{")
    assert "category_id 7" in _error(tmp_path, gt, [{**pred(1, 0.9, A), "category_id": 7}])


def test_missing_file_is_bad_usage(tmp_path: Path, gt: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        evaluate_images([gt], tmp_path / "absent.json")
    with pytest.raises(ConfigError, match="IoU type"):
        evaluate_images([gt], write_json(tmp_path / "p.json", []), "poly")  # type: ignore[arg-type]


def test_ground_truth_errors(tmp_path: Path) -> None:
    def load(document: dict[str, Any]) -> str:
        path = write_json(tmp_path / "bad_gt.json", document)
        with pytest.raises(DataError) as info:
            evaluate_images([path], write_json(tmp_path / "p.json", []))
        assert "bad_gt.json" in str(info.value)
        return str(info.value)

    image = {"id": 1, "height": 10, "width": 10, "is_instance_exhaustive": True}
    assert "appears more than once" in load({"images": [image, image]})
    assert "is_instance_exhaustive" in load({"images": [{"id": 1, "height": 10, "width": 10}]})
    ann = {"id": 5, "image_id": 2, "segmentation": A}
    assert "annotations[0] (id=5): unknown image_id 2" in load({"images": [image], "annotations": [ann]})
    small = {**ann, "image_id": 1, "segmentation": rect(0, 2, 0, 2, h=5, w=5)}
    assert "id=5" in load({"images": [image], "annotations": [small]})
    assert "no instance-exhaustive pairs" in load({"images": [{**image, "is_instance_exhaustive": False}]})


def test_ground_truth_files_must_hold_the_same_pairs(tmp_path: Path) -> None:
    a = gt_file(tmp_path / "a.json", {1: [], 2: []})
    b = gt_file(tmp_path / "b.json", {1: [], 3: []})
    with pytest.raises(DataError, match="lacks pair 2"):
        evaluate_images([a, b], write_json(tmp_path / "p.json", []))


def test_polygon_ground_truth_and_uncompressed_rle(tmp_path: Path) -> None:
    """COCO polygons and uncompressed RLE in the ground truth are converted as pycocotools does."""
    polygon = [[0.0, 0.0, 4.5, 0.0, 4.5, 4.5, 0.0, 4.5]]
    gt = gt_file(tmp_path / "gt.json", {1: [{"segmentation": polygon}], 2: []})
    as_rle = mask_utils.merge(mask_utils.frPyObjects(polygon, 10, 10))
    uncompressed = {"size": [10, 10], "counts": _runs(mask_utils.decode(as_rle))}
    preds = write_json(tmp_path / "p.json", [pred(1, 0.9, uncompressed)])
    assert evaluate_images([gt], preds).per_threshold.TP == [1] * 10


def _runs(mask: np.ndarray) -> list[int]:
    flat = mask.flatten(order="F")
    change = np.flatnonzero(np.diff(flat)) + 1
    edges = np.concatenate(([0], change, [flat.size]))
    runs = np.diff(edges).tolist()
    return ([0] if flat[0] else []) + runs


def test_video_input_errors(tmp_path: Path) -> None:
    gt = video_gt(tmp_path, [[A, None, B]])

    def error(preds: list[dict[str, Any]]) -> str:
        with pytest.raises(DataError) as info:
            evaluate_videos(gt, write_json(tmp_path / "vp.json", preds))
        assert "vp.json" in str(info.value)
        return str(info.value)

    base = {"video_id": 1, "category_id": 1, "score": 0.9}
    assert "2 frames, the video 3" in error([{**base, "segmentations": [A, B]}])
    assert "not a pair" in error([{**base, "category_id": 9, "segmentations": [A, None, B]}])
    assert "frame 2" in error([{**base, "segmentations": [A, None, rect(0, 1, 0, 1, h=4, w=4)]}])
    assert "prediction #0" in error([{**base, "score": float("inf"), "segmentations": [A, None, B]}])


def _python_runs(counts: bytes) -> list[int] | None:
    """pycocotools' rleFrString, in Python, refusing what would read past the string."""
    runs: list[int] = []
    p = 0
    while p < len(counts):
        x, k, more = 0, 0, True
        while more:
            if p >= len(counts) or not 48 <= counts[p] <= 111:
                return None
            c = counts[p] - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p, k = p + 1, k + 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if k > 7:
            return None
        if len(runs) > 2:
            x += runs[-2]
        runs.append(x)
    return runs


def test_rle_check_agrees_with_a_plain_decoder() -> None:
    rng = np.random.default_rng(0)
    counts, areas, expected = [], [], []
    for _ in range(2000):
        h, w = (int(v) for v in rng.integers(1, 70, 2))
        mask = rng.random((h, w)) < rng.random() if rng.random() < 0.7 else np.zeros((h, w), bool)
        c = bytearray(rle(mask)["counts"].encode())
        if rng.random() < 0.3:  # corrupt one character, or cut the string
            if rng.random() < 0.5:
                c[int(rng.integers(len(c)))] = int(rng.integers(40, 120))
            else:
                c = c[: int(rng.integers(len(c)))]
        runs = _python_runs(bytes(c))
        counts.append(bytes(c))
        areas.append(h * w)
        expected.append(runs is not None and all(0 <= r < 2**32 for r in runs) and sum(runs) == h * w)
    offsets = np.concatenate(([0], np.cumsum([len(c) for c in counts])))
    assert compressed_rles_ok(b"".join(counts), offsets, np.array(areas)).tolist() == expected
    assert 0 < sum(expected) < len(expected)


def test_rle_helpers() -> None:
    for h, w in [(1, 1), (7, 9), (300, 200)]:
        assert empty_rle(h, w)["counts"] == mask_utils.encode(np.zeros((h, w), np.uint8, order="F"))["counts"]
    assert uncompressed_rle_ok([0, 4, 96], 100) and not uncompressed_rle_ok([5, -1, 96], 100)
    assert polygon_ok([[0, 0, 1, 0, 1, 1]]) and not polygon_ok([[0, 0, 1, 0]]) and not polygon_ok([])
