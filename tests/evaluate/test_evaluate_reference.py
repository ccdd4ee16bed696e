"""Our evaluator against Meta's reference on many random SA-Co cases: every metric within 1e-6.

The cases carry every edge case at random (negatives, pairs without predictions,
scores at the threshold, crowd ground truths, non-exhaustive pairs, duplicate
predictions, several categories, several annotators); a few sets are skewed on
purpose (no negatives, no positives, an empty prediction file, mostly crowd).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from components.evaluate import evaluate_images, evaluate_videos
from tests.evaluate.saco_cases import CaseOptions, image_case, video_case, write_image_case, write_json
from tests.evaluate.saco_reference import (
    differences,
    ours_by_reference_name,
    reference_image_metrics,
    reference_video_metrics,
    video_reference,
)

SKEWED = {
    "no_negatives": CaseOptions(pairs=12, negative=0.0),
    "no_positives": CaseOptions(pairs=12, negative=1.0),
    "empty_prediction_file": CaseOptions(pairs=12, empty_prediction_file=True),
    "mostly_crowd": CaseOptions(pairs=12, crowd=0.8),
    "mostly_not_exhaustive": CaseOptions(pairs=20, files=2, not_exhaustive=0.6),
    "three_annotators": CaseOptions(pairs=25, files=3),
    "one_pair": CaseOptions(pairs=1, negative=0.0, not_exhaustive=0.0),
    "many_pairs": CaseOptions(pairs=150, files=2),  # several matching batches
}


def _compare_image(tmp_path: Path, opts: CaseOptions, seed: int, workers: int | None = None) -> None:
    rng = np.random.default_rng(seed)
    gts, preds = image_case(rng, opts)
    gt_paths, pred_path = write_image_case(tmp_path / f"case{seed}", gts, preds)
    if not any(im["is_instance_exhaustive"] for gt in gts for im in gt["images"]):
        return  # the reference cannot evaluate an empty set (we raise a DataError)
    for iou_type in ("segm", "bbox"):
        reference = reference_image_metrics(gt_paths, pred_path, iou_type)
        ours = evaluate_images(gt_paths, pred_path, iou_type, workers=workers)
        assert differences(ours_by_reference_name(ours), reference) == {}, (seed, iou_type)


@pytest.mark.parametrize("block", range(8))
def test_random_image_cases_match_reference(tmp_path: Path, block: int) -> None:
    for seed in range(block * 40, (block + 1) * 40):
        rng = np.random.default_rng(10_000 + seed)
        opts = CaseOptions(pairs=int(rng.integers(2, 40)), files=int(rng.choice([1, 1, 2, 3])))
        _compare_image(tmp_path, opts, seed)


@pytest.mark.parametrize("name", sorted(SKEWED))
def test_skewed_image_sets_match_reference(tmp_path: Path, name: str) -> None:
    for seed in range(5):
        _compare_image(tmp_path, SKEWED[name], seed)


def test_parallel_loading_and_matching_match_reference(tmp_path: Path) -> None:
    """workers=2 forces the forked loaders and matchers even on small files."""
    for seed in range(3):
        _compare_image(tmp_path, CaseOptions(pairs=40, files=2), seed, workers=2)


@pytest.fixture(scope="module")
def video_module() -> Iterator[ModuleType]:
    with video_reference() as module:
        yield module


@pytest.mark.parametrize("iou_type", ["segm", "bbox"])
def test_random_video_cases_match_reference(tmp_path: Path, video_module: ModuleType, iou_type: str) -> None:
    for seed in range(100):
        rng = np.random.default_rng(20_000 + seed)
        gt, preds = video_case(rng, videos=int(rng.integers(1, 8)))
        gt_path = write_json(tmp_path / f"gt{seed}.json", gt)
        pred_path = write_json(tmp_path / f"pred{seed}.json", preds)
        reference = reference_video_metrics(video_module, gt_path, pred_path, iou_type)
        ours = evaluate_videos(gt_path, pred_path, iou_type)  # type: ignore[arg-type]
        assert differences(ours_by_reference_name(ours), reference) == {}, (seed, iou_type)
