"""Where a model's scores stand against the SAM 3 protocol's 0.5: the metrics at other score thresholds,
and how well its best detection's box and mask each find the object, by object size.

    python benchmarks/score_thresholds.py GROUND_TRUTH PREDICTIONS [--thresholds 0.2,0.3,0.4,0.5]

GROUND_TRUTH is an SA-Co annotations file (the gold split's ``annotations.json``), PREDICTIONS a
predictions file of the same pairs (a stage's ``eval/predictions.json`` in the store, or what
``sam3-pipeline predict`` writes); either may be an ``s3://`` URI of the configured store.

The gates and every reported figure use 0.5 (``components.evaluate.cgf1``). This is a diagnostic: a
model whose IL_MCC rises well above its 0.5 value at a lower threshold recognises better than its
scores say. With the official classification loss a matched query's probability settles near its
box IoU, so scores reach 0.5 only where boxes overlap their objects by more than that; the second
table shows whether the box head or the mask head holds them back (the mask's own box against the
predicted box).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from components.errors import Sam3Error
from components.evaluate.cgf1 import evaluate_images
from components.evaluate.diagnostics import box_of, mask_box, top_detections

SIZES = ((0, 300), (300, 900), (900, 1800), (1800, None))
"""Object area bins, in pixels of the ground truth's image (the synthetic gold images are 224 px)."""


def local(path: str, tmp: Path) -> Path:
    """A local copy of ``path`` (an ``s3://`` URI of the configured store), or the path itself."""
    if not path.startswith("s3://"):
        return Path(path)
    from components.storage import ObjectStore

    store = ObjectStore.from_env()
    key = store.key_of(path)  # refuses a URI outside the configured bucket
    out = tmp / Path(key).name
    out.write_bytes(store.get_bytes(key))
    return out


def by_threshold(truth: Path, predictions: Path, thresholds: list[float]) -> list[list[str]]:
    rows = []
    for t in thresholds:
        r = evaluate_images([truth], predictions, workers=1, score_threshold=t).to_json_dict()
        rows.append(
            [
                f"{t:.2f}",
                f"{r['cgF1']:.2f}",
                f"{r['IL_MCC']:.3f}",
                f"{r['pmF1']:.2f}",
                f"{r['IL_precision']:.3f}",
                f"{r['IL_recall']:.3f}",
                f"{r['pmF1@0.5']:.2f}",
            ]
        )
    return rows


def localisation(truth: Path, predictions: Path) -> list[list[str]]:
    """Per positive pair, its best-scoring detection against the ground-truth instance its mask's box
    overlaps most: box IoU, the mask's box IoU, mask IoU; averaged per object size."""
    doc = json.loads(truth.read_text())
    anns: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for a in doc["annotations"]:
        anns[a["image_id"]].append(a)
    top = top_detections(json.loads(predictions.read_text()))
    found: list[tuple[float, float, float, float]] = []
    for pair, objects in anns.items():
        p = top.get(pair)
        if p is None:
            continue
        boxes = [box_of(a) for a in objects]
        crowd = [0] * len(objects)
        around_mask = mask_utils.iou([mask_box(p["segmentation"])], boxes, crowd)[0]
        k = int(np.argmax(around_mask))
        box = float(mask_utils.iou([box_of(p)], [boxes[k]], [0])[0][0])
        mask = float(mask_utils.iou([p["segmentation"]], [objects[k]["segmentation"]], [0])[0][0])
        area = objects[k].get("area") or float(mask_utils.area(objects[k]["segmentation"]))
        found.append((area, box, float(around_mask[k]), mask))
    rows = []
    table = np.array(found) if found else np.zeros((0, 4))
    for lo, hi in (*SIZES, (0, None)):
        sel = table[(table[:, 0] >= lo) & ((table[:, 0] < hi) if hi else True)]
        label = "all" if (lo, hi) == (0, None) else f"{lo}-{hi}" if hi else f">= {lo}"
        means = sel[:, 1:].mean(0) if len(sel) else np.zeros(3)
        rows.append([label, str(len(sel)), *(f"{v:.3f}" for v in means)])
    return rows


def show(head: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) + 2 for i, h in enumerate(head)]
    for line in (head, *rows):
        print("  " + "".join(f"{c:>{w}}" for c, w in zip(line, widths, strict=True)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ground_truth")
    ap.add_argument("predictions")
    ap.add_argument("--thresholds", default="0.2,0.25,0.3,0.35,0.4,0.45,0.5")
    args = ap.parse_args()
    try:
        thresholds = [float(t) for t in args.thresholds.split(",")]
        with tempfile.TemporaryDirectory() as name:
            truth, predictions = (local(p, Path(name)) for p in (args.ground_truth, args.predictions))
            print(f"{predictions} against {truth}: the metrics at each score threshold (the protocol: 0.5)")
            show(
                ["threshold", "cgF1", "IL_MCC", "pmF1", "IL precision", "IL recall", "pmF1@IoU0.5"],
                by_threshold(truth, predictions, thresholds),
            )
            print("the best-scoring detection of each positive pair, by object area (px of the gold image)")
            head = ["area", "pairs", "box IoU", "its mask's box IoU", "mask IoU"]
            show(head, localisation(truth, predictions))
    except (Sam3Error, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
