"""What a cgF1 of 0 hides: recognition and localisation measured without the 0.5 score threshold.

cgF1 counts only detections scoring at least 0.5. A young model's scores stay
below it (the official loss pulls a query's probability toward its box IoU, and
the presence probability starts at 0.5), so cgF1, IL_MCC and pmF1 all read 0
long before the model is useless. Two threshold-free numbers show the gap:

- ``recognition_auc``: does a pair's best score rank positive (image, noun
  phrase) pairs above negative ones (0.5 = chance, 1 = perfect)?
- ``top_detection_iou``: mask IoU of each positive pair's best-scoring
  detection with its closest ground-truth instance, averaged (0 when the pair
  has no detection); ``top_detection_iou_over_50`` the share above 0.5.
- ``top_detection_box_iou``: the same detection's box IoU with its closest
  ground-truth box. The official classification loss pulls a matched query's
  probability toward its box IoU, so scores clear 0.5 only once boxes are good.
- ``top_detection_mask_box_iou``: the box around the same detection's mask, against the
  closest ground-truth box: above ``top_detection_box_iou`` when the box head lags the
  mask head (the score then follows the worse of the two).

Diagnostics only: gates use the SAM 3 metrics.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
from scipy.stats import rankdata


def diagnostics(ground_truth: Path, predictions: list[dict[str, Any]]) -> dict[str, float]:
    doc = json.loads(Path(ground_truth).read_text())
    truth: dict[int, list[dict[str, Any]]] = defaultdict(list)
    truth_boxes: dict[int, list[list[float]]] = defaultdict(list)
    for ann in doc.get("annotations", []):
        truth[ann["image_id"]].append(ann["segmentation"])
        truth_boxes[ann["image_id"]].append(box_of(ann))
    best = top_detections(predictions)
    labels, scores, ious, box_ious, mask_box_ious = [], [], [], [], []
    for image in doc["images"]:
        pair = image["id"]
        top = best.get(pair)
        labels.append(bool(truth[pair]))
        scores.append(top["score"] if top else 0.0)
        if truth[pair]:
            if top is None:
                ious.append(0.0)
                box_ious.append(0.0)
                mask_box_ious.append(0.0)
            else:
                crowd = [0] * len(truth[pair])
                ious.append(float(np.max(mask_utils.iou([top["segmentation"]], truth[pair], crowd))))
                box_ious.append(float(np.max(mask_utils.iou([box_of(top)], truth_boxes[pair], crowd))))
                around_mask = [mask_box(top["segmentation"])]
                mask_box_ious.append(float(np.max(mask_utils.iou(around_mask, truth_boxes[pair], crowd))))
    return {
        "recognition_auc": _auc(np.array(labels), np.array(scores)),
        "top_detection_iou": float(np.mean(ious)) if ious else 0.0,
        "top_detection_iou_over_50": float(np.mean(np.array(ious) > 0.5)) if ious else 0.0,
        "top_detection_box_iou": float(np.mean(box_ious)) if box_ious else 0.0,
        "top_detection_mask_box_iou": float(np.mean(mask_box_ious)) if mask_box_ious else 0.0,
        "max_score": float(max(scores, default=0.0)),
    }


def top_detections(predictions: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Each pair's (``image_id``'s) highest-scoring detection."""
    best: dict[int, dict[str, Any]] = {}
    for p in predictions:
        if p["image_id"] not in best or p["score"] > best[p["image_id"]]["score"]:
            best[p["image_id"]] = p
    return best


def box_of(item: dict[str, Any]) -> list[float]:
    """An annotation's or detection's box (x, y, w, h, normalised to the image as SA-Co stores it), from
    its mask where it has none."""
    box = item.get("bbox")
    return list(box) if box else mask_box(item["segmentation"])


def mask_box(rle: dict[str, Any]) -> list[float]:
    """The box around an RLE mask, normalised to the mask's size (x, y, w, h)."""
    height, width = rle["size"]
    x, y, w, h = mask_utils.toBbox(rle).tolist()
    return [x / width, y / height, w / width, h / height]


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with ties averaged); 0.5 when one class is missing."""
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if not positives or not negatives:
        return 0.5
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))
