"""`sam3-pipeline evaluate` against Meta's reference evaluator, each a whole process, side by side.

    python benchmarks/evaluate.py [--pairs 50000] [--files 3] [--iou-type segm] [--rounds 3] [--data DIR]

Writes a synthetic gold set shaped like SA-Co/Gold (169k image-NP pairs, 84% of
them negative, about 4.8 instance masks per positive pair, three annotators' files,
evaluated together in oracle mode; ``--files 1`` for a single file): image-NP pairs of
240-320 px images, 84% negative, 1-8 ellipse masks per positive pair, a few crowd
and non-exhaustive pairs; predictions are shifted and scaled copies of 85% of the
instances (scores 0.3-1) plus 0-2 false positives per pair (scores 0-0.7). Then it
times, on the same files, alternating for a few rounds: (a) `python -m pipeline
evaluate` and (b) `benchmarks/reference_evaluate.py` (``CGF1Evaluator`` from
``sam3/eval/cgf1_eval.py``, loaded by path). Each time is the wall clock of the whole
process: start-up, JSON loading, evaluation and writing the metrics. The figure is
reference time / our time, the median of the per-round ratios (goal >= 5); both
must give the same headline numbers.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

SIZES = [(240, 320), (320, 240), (256, 256)]
HEADLINE = {
    "cgF1": ("cgF1", 100),
    "IL_MCC": ("IL_MCC", 1),
    "positive_micro_F1": ("pmF1", 100),
    "cgF1@0.5": ("cgF1@0.5", 100),
    "cgF1@0.75": ("cgF1@0.75", 100),
}


def _ellipse(
    yy: np.ndarray,
    xx: np.ndarray,
    params: tuple[float, ...],
    shift: tuple[int, int] = (0, 0),
    scale: float = 1.0,
) -> np.ndarray:
    """An ellipse mask; params: centre (y, x) and radii (y, x)."""
    cy, cx, ry, rx = params
    return ((yy - cy - shift[0]) / (ry * scale)) ** 2 + ((xx - cx - shift[1]) / (rx * scale)) ** 2 <= 1.0


def _encode(mask: np.ndarray) -> dict[str, Any]:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(mask.shape), "counts": rle["counts"].decode("ascii")}


def mask_pool(rng: np.random.Generator, objects: int) -> dict[tuple[int, int], list[list[dict[str, Any]]]]:
    """Per image size: objects, each [ground-truth mask, then 4 imperfect predictions of it]."""
    pool: dict[tuple[int, int], list[list[dict[str, Any]]]] = {}
    for h, w in SIZES:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        pool[(h, w)] = []
        for _ in range(objects):
            params = (
                rng.uniform(0.1, 0.9) * h,
                rng.uniform(0.1, 0.9) * w,
                rng.uniform(8, h / 3),
                rng.uniform(8, w / 3),
            )
            variants = [_ellipse(yy, xx, params)]
            for _ in range(4):
                shift = (int(rng.integers(-6, 7)), int(rng.integers(-6, 7)))
                variants.append(_ellipse(yy, xx, params, shift, rng.uniform(0.8, 1.2)))
            pool[(h, w)].append([_encode(m) for m in variants])
    return pool


def make_gold_set(folder: Path, pairs: int, files: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    pool = mask_pool(rng, 300)
    gts: list[dict[str, Any]] = [
        {"images": [], "annotations": [], "categories": [{"id": 1, "name": "object"}]} for _ in range(files)
    ]
    preds: list[dict[str, Any]] = []
    ann_id = 0
    for pid in range(1, pairs + 1):
        size = SIZES[int(rng.integers(len(SIZES)))]
        objects = [] if rng.random() < 0.84 else rng.choice(len(pool[size]), int(rng.integers(1, 9))).tolist()
        for gt in gts:
            exhaustive = bool(rng.random() < 0.97)
            gt["images"].append(
                {
                    "id": pid,
                    "file_name": f"{pid}.jpg",
                    "text_input": "a thing",
                    "height": size[0],
                    "width": size[1],
                    "is_instance_exhaustive": exhaustive,
                }
            )
            for o in objects:
                segm = pool[size][o][0 if files == 1 else int(rng.integers(0, 2))]
                ann_id += 1
                gt["annotations"].append(
                    {
                        "id": ann_id,
                        "image_id": pid,
                        "category_id": 1,
                        "segmentation": segm,
                        "bbox": [float(v) for v in mask_utils.toBbox(segm)],
                        "area": int(mask_utils.area(segm)),
                        "iscrowd": int(rng.random() < 0.03),
                    }
                )
        found = [
            (pool[size][o][int(rng.integers(0, 5))], rng.uniform(0.3, 1.0))
            for o in objects
            if rng.random() < 0.85
        ]
        wrong = [
            (pool[size][int(rng.integers(len(pool[size])))][1], rng.uniform(0.0, 0.7))
            for _ in range(int(rng.integers(0, 3)))
        ]
        for segm, score in found + wrong:
            preds.append(
                {
                    "image_id": pid,
                    "category_id": 1,
                    "score": float(score),
                    "segmentation": segm,
                    "bbox": [float(v) for v in mask_utils.toBbox(segm)],
                }
            )
    for i, gt in enumerate(gts):
        (folder / f"gold_{i}.json").write_text(json.dumps(gt))
    (folder / "predictions.json").write_text(json.dumps(preds))


def timed(command: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(command)}\n{done.stderr[-3000:]}")
    return elapsed, done.stdout.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=50_000)
    parser.add_argument(
        "--files", type=int, default=3, help="ground-truth files (annotators; SA-Co/Gold has 3)"
    )
    parser.add_argument("--iou-type", default="segm", choices=["segm", "bbox"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data", type=Path, help="keep the generated files here (reused when present)")
    parser.add_argument("--out", type=Path, help="also write the figures here as JSON")
    args = parser.parse_args()
    here = Path(__file__).resolve().parent
    with tempfile.TemporaryDirectory(prefix="sam3-bench-eval-") as tmp:
        folder = args.data or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        gt_paths = [folder / f"gold_{i}.json" for i in range(args.files)]
        pred_path = folder / "predictions.json"
        if not all(p.exists() for p in [*gt_paths, pred_path]):
            make_gold_set(folder, args.pairs, args.files)
        n_preds = len(json.loads(pred_path.read_text()))
        size_mb = sum(p.stat().st_size for p in [*gt_paths, pred_path]) / 1e6
        print(
            f"data: {args.pairs} pairs, {n_preds} predictions, {len(gt_paths)} ground-truth file(s), "
            f"{size_mb:.0f} MB of JSON ({time.perf_counter() - t0:.0f} s)",
            file=sys.stderr,
        )
        common = [
            *(a for p in gt_paths for a in ("--gt", str(p))),
            "--pred",
            str(pred_path),
            "--iou-type",
            args.iou_type,
        ]
        ours_cmd = [sys.executable, "-m", "pipeline", "evaluate", *common, "--out", str(folder / "ours.json")]
        ref_cmd = [
            sys.executable,
            str(here / "reference_evaluate.py"),
            *common,
            "--out",
            str(folder / "reference.json"),
        ]
        ours_s, ref_s = [], []
        for r in range(args.rounds):
            ours_s.append(timed(ours_cmd)[0])
            ref_s.append(timed(ref_cmd)[0])
            print(
                f"round {r + 1}: ours {ours_s[-1]:.2f} s, reference {ref_s[-1]:.2f} s, "
                f"ratio {ref_s[-1] / ours_s[-1]:.1f}",
                file=sys.stderr,
            )
        ours = json.loads((folder / "ours.json").read_text())
        ref = json.loads((folder / "reference.json").read_text())
        prefix = f"cgF1_eval_{args.iou_type}_"
        agree = {
            name: abs(ours[key] / scale - ref[prefix + name]) <= 1e-6
            for name, (key, scale) in HEADLINE.items()
        }
    figures = {
        "pairs": args.pairs,
        "predictions": n_preds,
        "gt_files": len(gt_paths),
        "json_mb": round(size_mb, 1),
        "rounds": args.rounds,
        "ours_s": round(statistics.median(ours_s), 2),
        "reference_s": round(statistics.median(ref_s), 2),
        "speedup": round(statistics.median(r / o for r, o in zip(ref_s, ours_s, strict=True)), 2),
        "same_numbers": all(agree.values()),
        "cgF1": ours["cgF1"],
        "IL_MCC": ours["IL_MCC"],
    }
    print(json.dumps(figures))
    if args.out:
        args.out.write_text(json.dumps(figures, indent=1))
    if not all(agree.values()):
        sys.exit(f"metrics differ from the reference: {agree}")


if __name__ == "__main__":
    main()
