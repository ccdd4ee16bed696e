"""Random SA-Co-format evaluation cases: ground truth (one or more annotators) and predictions.

Small images and a handful of masks per pair, with every edge case the metrics
have: negative pairs, pairs without predictions, predictions below the score
threshold (and exactly at it), crowd ground truths, pairs that some annotator
marks non-exhaustive, duplicate predictions (ties in the assignment), several
categories (ordering), and annotators that disagree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pycocotools.mask as mask_utils

CATEGORIES = [{"id": 1, "name": "thing"}, {"id": 4, "name": "other thing"}]


@dataclass
class CaseOptions:
    pairs: int = 30
    files: int = 1
    negative: float = 0.3
    not_exhaustive: float = 0.1
    crowd: float = 0.1
    no_predictions: float = 0.15
    empty_prediction_file: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def rle(mask: np.ndarray) -> dict[str, Any]:
    """Compressed COCO RLE with a str ``counts``, as it appears in JSON."""
    encoded = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": encoded["counts"].decode("ascii")}


def box_of(segmentation: dict[str, Any]) -> list[float]:
    return [float(v) for v in mask_utils.toBbox(segmentation)]


def random_shape(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A rectangle or an ellipse covering part of an h x w image (never empty)."""
    mask = np.zeros((h, w), dtype=bool)
    y0, x0 = rng.integers(0, h - 2), rng.integers(0, w - 2)
    y1, x1 = rng.integers(y0 + 2, h + 1), rng.integers(x0 + 2, w + 1)
    if rng.random() < 0.5:
        mask[y0:y1, x0:x1] = True
    else:
        yy, xx = np.mgrid[0:h, 0:w]
        cy, cx, ry, rx = (y0 + y1) / 2, (x0 + x1) / 2, max((y1 - y0) / 2, 1), max((x1 - x0) / 2, 1)
        mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
        mask[int(cy), int(cx)] = True
    return mask


def perturb(rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
    """The same object, shifted by a few pixels (sometimes unchanged)."""
    if rng.random() < 0.25:
        return mask.copy()
    dy, dx = rng.integers(-2, 3, size=2)
    shifted = np.roll(np.roll(mask, dy, axis=0), dx, axis=1)
    return shifted if shifted.any() else mask.copy()


def random_score(rng: np.random.Generator) -> float:
    u = rng.random()
    if u < 0.05:
        return 0.5  # exactly at the threshold: kept
    if u < 0.08:
        return 0.4999999
    return float(rng.random())


def image_case(
    rng: np.random.Generator, opts: CaseOptions
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(ground-truth documents, one per annotator; predictions)."""
    pair_ids = rng.permutation(np.arange(1, 10 * opts.pairs + 1))[: opts.pairs]
    gts: list[dict[str, Any]] = [
        {"images": [], "annotations": [], "categories": CATEGORIES} for _ in range(opts.files)
    ]
    preds: list[dict[str, Any]] = []
    ann_id = 1
    for pid in pair_ids:
        pid = int(pid)
        h, w = int(rng.integers(8, 40)), int(rng.integers(8, 40))
        objects = (
            []
            if rng.random() < opts.negative
            else [random_shape(rng, h, w) for _ in range(rng.integers(1, 5))]
        )
        for gt in gts:
            exhaustive = bool(rng.random() >= opts.not_exhaustive)
            gt["images"].append(
                {
                    "id": pid,
                    "height": h,
                    "width": w,
                    "is_instance_exhaustive": exhaustive,
                    "text_input": f"np {pid}",
                    "file_name": f"{pid}.jpg",
                }
            )
            kept = [perturb(rng, m) for m in objects if opts.files == 1 or rng.random() < 0.85]
            if objects and opts.files > 1 and rng.random() < 0.2:
                kept.append(random_shape(rng, h, w))
            for m in kept:
                segm = rle(m)
                gt["annotations"].append(
                    {
                        "id": ann_id,
                        "image_id": pid,
                        "category_id": int(rng.choice([1, 4])),
                        "segmentation": segm,
                        "bbox": box_of(segm),
                        "area": int(m.sum()),
                        "iscrowd": int(rng.random() < opts.crowd),
                    }
                )
                ann_id += 1
        if opts.empty_prediction_file or rng.random() < opts.no_predictions:
            continue
        masks = [perturb(rng, m) for m in objects if rng.random() < 0.8]
        masks += [random_shape(rng, h, w) for _ in range(rng.integers(0, 3))]
        if masks and rng.random() < 0.2:
            masks.append(masks[0].copy())  # a duplicate: ties in the assignment
        for m in masks:
            segm = rle(m)
            preds.append(
                {
                    "image_id": pid,
                    "category_id": int(rng.choice([1, 4])),
                    "score": random_score(rng),
                    "segmentation": segm,
                    "bbox": box_of(segm),
                }
            )
    rng.shuffle(preds)
    return gts, preds


def video_case(
    rng: np.random.Generator, videos: int = 6, max_frames: int = 4
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(ground truth, predicted masklets) in SA-Co video format; at least one prediction."""
    gt: dict[str, Any] = {"videos": [], "annotations": [], "video_np_pairs": [], "categories": []}
    preds: list[dict[str, Any]] = []
    for c in range(1, 4):
        gt["categories"].append({"id": c, "name": f"np {c}"})
    ann_id = 1
    for v in range(1, videos + 1):
        h, w, t = int(rng.integers(6, 20)), int(rng.integers(6, 20)), int(rng.integers(1, max_frames + 1))
        gt["videos"].append(
            {"id": v, "height": h, "width": w, "length": t, "file_names": [f"{v}/{i}.jpg" for i in range(t)]}
        )
        for c in range(1, 4):
            masklets = (
                [] if rng.random() < 0.35 else [_masklet(rng, h, w, t) for _ in range(rng.integers(1, 4))]
            )
            gt["video_np_pairs"].append(
                {"video_id": v, "category_id": c, "num_masklets": len(masklets), "noun_phrase": f"np {c}"}
            )
            for frames in masklets:
                gt["annotations"].append(
                    _masklet_record(ann_id, v, c, frames, iscrowd=int(rng.random() < 0.1))
                )
                ann_id += 1
            if rng.random() < 0.2:
                continue
            predicted = [
                m if rng.random() < 0.4 else [perturb(rng, f) if f is not None else None for f in m]
                for m in masklets
                if rng.random() < 0.8
            ]
            predicted += [_masklet(rng, h, w, t) for _ in range(rng.integers(0, 2))]
            for frames in predicted:
                record = _masklet_record(0, v, c, frames)
                del record["id"], record["iscrowd"]
                preds.append({**record, "score": random_score(rng)})
    if not preds:
        frames = _masklet(rng, gt["videos"][0]["height"], gt["videos"][0]["width"], gt["videos"][0]["length"])
        preds.append({**_masklet_record(0, 1, 1, frames), "score": 0.9})
    return gt, preds


def _masklet(rng: np.random.Generator, h: int, w: int, t: int) -> list[np.ndarray | None]:
    """Per-frame masks of one object, absent (None) in some frames but present in at least one."""
    base = random_shape(rng, h, w)
    frames: list[np.ndarray | None] = [None if rng.random() < 0.2 else perturb(rng, base) for _ in range(t)]
    if all(f is None for f in frames):
        frames[int(rng.integers(0, t))] = base
    return frames


def _masklet_record(
    ann_id: int, video: int, category: int, frames: list[np.ndarray | None], iscrowd: int = 0
) -> dict[str, Any]:
    segms = [rle(f) if f is not None else None for f in frames]
    return {
        "id": ann_id,
        "video_id": video,
        "category_id": category,
        "iscrowd": iscrowd,
        "segmentations": segms,
        "bboxes": [box_of(s) if s is not None else None for s in segms],
        "areas": [int(f.sum()) if f is not None else None for f in frames],
    }


def write_json(path: Path, document: Any) -> Path:
    path.write_text(json.dumps(document))
    return path


def write_image_case(
    directory: Path, gts: list[dict[str, Any]], preds: list[dict[str, Any]]
) -> tuple[list[Path], Path]:
    directory.mkdir(parents=True, exist_ok=True)
    gt_paths = [write_json(directory / f"gt_{i}.json", gt) for i, gt in enumerate(gts)]
    return gt_paths, write_json(directory / "pred.json", preds)
