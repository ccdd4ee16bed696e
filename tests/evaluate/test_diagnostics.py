"""Threshold-free diagnostics: recognition AUC, top-detection mask and box IoU, on hand-made cases."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from components.evaluate.diagnostics import diagnostics


def _rle(y0: int, y1: int) -> dict[str, object]:
    m = np.zeros((20, 20), dtype=np.uint8, order="F")
    m[y0:y1, 0:10] = 1
    r = mask_utils.encode(m)
    return {"size": [20, 20], "counts": r["counts"].decode()}


def _gt(tmp_path: Path) -> Path:
    doc = {
        "images": [{"id": i, "width": 20, "height": 20} for i in (1, 2, 3, 4)],
        "annotations": [
            {"id": 1, "image_id": 1, "segmentation": _rle(0, 10)},
            {"id": 2, "image_id": 2, "segmentation": _rle(10, 20)},
        ],  # pairs 3 and 4 are negatives
    }
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(doc))
    return path


def test_perfect_ranking_and_masks(tmp_path: Path) -> None:
    preds = [
        {"image_id": 1, "score": 0.4, "segmentation": _rle(0, 10)},
        {"image_id": 2, "score": 0.3, "segmentation": _rle(10, 20)},
        {"image_id": 3, "score": 0.1, "segmentation": _rle(0, 5)},
    ]
    d = diagnostics(_gt(tmp_path), preds)
    assert d["recognition_auc"] == 1.0 and d["top_detection_iou"] == 1.0
    assert d["top_detection_iou_over_50"] == 1.0 and d["max_score"] == 0.4
    assert d["top_detection_box_iou"] == 1.0  # boxes from the masks where none is given


def test_chance_ranking_and_a_missed_pair(tmp_path: Path) -> None:
    preds = [
        {"image_id": 1, "score": 0.2, "segmentation": _rle(0, 5)},  # IoU 0.5 with its truth
        {"image_id": 3, "score": 0.2, "segmentation": _rle(0, 5)},
    ]  # pair 2 (positive) has no detection, pair 4 (negative) neither
    d = diagnostics(_gt(tmp_path), preds)
    assert d["recognition_auc"] == 0.5
    assert d["top_detection_iou"] == 0.25 and d["top_detection_iou_over_50"] == 0.0
    assert d["top_detection_box_iou"] == 0.25


def test_box_iou_reads_the_detection_box(tmp_path: Path) -> None:
    """A detection with a good mask and a box beside its object (boxes normalised to the image, as SA-Co
    stores them): the box IoU tells them apart, and the box around the mask shows which head lags."""
    preds = [{"image_id": 1, "score": 0.3, "segmentation": _rle(0, 10), "bbox": [0.5, 0, 0.5, 0.5]}]
    d = diagnostics(_gt(tmp_path), preds)
    assert d["top_detection_iou"] == 0.5 and d["top_detection_box_iou"] == 0.0  # pair 2: no detection
    assert d["top_detection_mask_box_iou"] == 0.5


def test_boxes_compare_in_image_units_whatever_the_mask_size(tmp_path: Path) -> None:
    """A ground truth without a box (its mask's box, normalised) against a detection's normalised box."""
    preds = [{"image_id": 1, "score": 0.3, "segmentation": _rle(0, 10), "bbox": [0.0, 0.0, 0.5, 0.5]}]
    d = diagnostics(_gt(tmp_path), preds)
    assert d["top_detection_box_iou"] == 0.5 and d["top_detection_mask_box_iou"] == 0.5
