"""Small cases computed by hand, one per rule of the SAM 3 definitions.

Masks are rectangles on 10 x 10 images so that every IoU is a simple fraction;
the expected counts are worked out in the comments and the metrics follow from
the published formulas (written out again here, independently of the library).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from components.errors import ConfigError
from components.evaluate import evaluate_images, evaluate_videos
from components.evaluate.matching import IOU_THRESHOLDS, matched_ious
from tests.evaluate.saco_cases import rle, write_json

H = W = 10


def rect(r0: int, r1: int, c0: int, c1: int, h: int = H, w: int = W) -> dict[str, Any]:
    mask = np.zeros((h, w), dtype=bool)
    mask[r0:r1, c0:c1] = True
    return rle(mask)


def gt_file(path: Path, pairs: dict[int, list[dict[str, Any]]], not_exhaustive: tuple[int, ...] = ()) -> Path:
    """pairs: pair id -> annotations (each {"segmentation": ..., optional "iscrowd"})."""
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for pid, anns in pairs.items():
        images.append(
            {"id": pid, "height": H, "width": W, "is_instance_exhaustive": pid not in not_exhaustive}
        )
        for a in anns:
            annotations.append(
                {"id": len(annotations) + 1, "image_id": pid, "category_id": 1, "iscrowd": 0, **a}
            )
    return write_json(path, {"images": images, "annotations": annotations, "categories": [{"id": 1}]})


def pred(pid: int, score: float, segmentation: dict[str, Any]) -> dict[str, Any]:
    return {"image_id": pid, "category_id": 1, "score": score, "segmentation": segmentation}


def f1(tp: float, fp: float, fn: float) -> float:
    p, r = tp / (tp + fp + 1e-4), tp / (tp + fn + 1e-4)
    return 2 * p * r / (p + r + 1e-4)


def mcc(tp: int, fp: int, tn: int, fn: int) -> float:
    return (tp * tn - fp * fn) / (math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)) + 1e-6)


A, B = rect(0, 5, 0, 5), rect(5, 10, 5, 10)  # 25 pixels each


def _b_minus_4() -> dict[str, Any]:
    """B without 4 of its pixels: IoU with B = 21/25 = 0.84."""
    mask = np.zeros((H, W), dtype=bool)
    mask[5:10, 5:10] = True
    mask[5, 5:9] = False
    return rle(mask)


def five_pairs(tmp_path: Path) -> tuple[Path, Path]:
    """Pair 1: IL_TP (A exact, B at IoU 0.84, a 0.3-score copy of B dropped); pair 2: IL_FN (one
    ground truth, no prediction); pair 3: IL_FP (no ground truth, one prediction at 0.7); pair 4:
    IL_TN (a 0.2-score prediction only); pair 5: IL_TN (nothing)."""
    gt = gt_file(
        tmp_path / "gt.json",
        {1: [{"segmentation": A}, {"segmentation": B}], 2: [{"segmentation": A}], 3: [], 4: [], 5: []},
    )
    preds = [pred(1, 0.9, A), pred(1, 0.8, _b_minus_4()), pred(1, 0.3, B), pred(3, 0.7, A), pred(4, 0.2, B)]
    return gt, write_json(tmp_path / "pred.json", preds)


def test_counts_and_every_metric_by_hand(tmp_path: Path) -> None:
    gt, pr = five_pairs(tmp_path)
    r = evaluate_images([gt], pr)
    c = r.counts
    assert (c.pairs, c.IL_TP, c.IL_FN, c.IL_FP, c.IL_TN, c.kept_predictions) == (5, 1, 1, 1, 2, 3)
    # IoU 0.84 passes thresholds 0.50..0.80 (7 of them), not 0.85..0.95
    low, high = 7, 3
    expected = {
        "TP": [2] * low + [1] * high,
        "FP": [1] * low + [2] * high,  # pair 3's prediction (+ pair 1's B above 0.8)
        "FN": [1] * low + [2] * high,  # pair 2's ground truth (+ pair 1's B above 0.8)
        "pmFP": [0] * low + [1] * high,  # only IL_TP pairs count for pmFP
    }
    assert {k: getattr(r.per_threshold, k) for k in expected} == expected
    tp, fp, fn, pm_fp = (np.array(expected[k]) for k in ("TP", "FP", "FN", "pmFP"))
    pm_f1 = np.array([f1(*v) for v in zip(tp, pm_fp, fn, strict=True)])
    il_mcc = mcc(1, 1, 2, 1)
    assert abs(il_mcc - 1 / 6) < 1e-5
    document = r.model_dump(by_alias=True)
    by_hand = {
        "IL_MCC": il_mcc,
        "pmF1": 100 * pm_f1.mean(),
        "cgF1": 100 * (pm_f1 * il_mcc).mean(),
        "cgF1@0.5": 100 * pm_f1[0] * il_mcc,
        "cgF1@0.75": 100 * pm_f1[5] * il_mcc,
        "F1": np.mean([f1(*v) for v in zip(tp, fp, fn, strict=True)]),
        # pair 1 alone: F1(2, 0, 0) below 0.85 and F1(1, 1, 1) above
        "positive_macro_F1": (low * f1(2, 0, 0) + high * f1(1, 1, 1)) / 10,
    }
    for key, value in by_hand.items():
        assert abs(document[key] - value) < 1e-9, key
    for key, value in {"IL_precision": 1 / 2, "IL_recall": 1 / 2, "IL_FPR": 1 / 3}.items():
        assert abs(document[key] - value) < 1e-5, key
    assert r.warnings == []


def test_score_threshold_is_inclusive(tmp_path: Path) -> None:
    gt = gt_file(tmp_path / "gt.json", {1: [{"segmentation": A}], 2: []})
    kept = evaluate_images([gt], write_json(tmp_path / "a.json", [pred(1, 0.5, A)]))
    dropped = evaluate_images([gt], write_json(tmp_path / "b.json", [pred(1, 0.4999999, A)]))
    assert kept.counts.IL_TP == 1 and kept.per_threshold.TP == [1] * 10
    assert dropped.counts.IL_FN == 1 and dropped.per_threshold.TP == [0] * 10


def test_a_diagnostic_may_ask_for_another_score_threshold(tmp_path: Path) -> None:
    """The protocol's 0.5 is the default; benchmarks/score_thresholds.py asks where scores would need it."""
    gt = gt_file(tmp_path / "gt.json", {1: [{"segmentation": A}], 2: []})
    preds = write_json(tmp_path / "p.json", [pred(1, 0.3, A), pred(2, 0.2, B)])
    at_03 = evaluate_images([gt], preds, score_threshold=0.3)
    assert at_03.score_threshold == 0.3
    assert at_03.counts.IL_TP == 1 and at_03.counts.IL_TN == 1  # pair 2's 0.2 still falls below
    assert evaluate_images([gt], preds).counts.IL_FN == 1
    for bad in (0.0, 1.5):
        with pytest.raises(ConfigError, match="score threshold"):
            evaluate_images([gt], preds, score_threshold=bad)


def test_crowd_ground_truth_is_neither_matched_nor_counted(tmp_path: Path) -> None:
    """A prediction on a crowd region is a false positive (the reference does not ignore it),
    and a pair whose only ground truth is crowd is a negative pair."""
    gt = gt_file(
        tmp_path / "gt.json",
        {
            1: [{"segmentation": A}, {"segmentation": B, "iscrowd": 1}],
            2: [{"segmentation": B, "iscrowd": 1}],
            3: [],
        },
    )
    r = evaluate_images([gt], write_json(tmp_path / "p.json", [pred(1, 0.9, A), pred(1, 0.9, B)]))
    assert (
        r.per_threshold.TP == [1] * 10 and r.per_threshold.FP == [1] * 10 and r.per_threshold.FN == [0] * 10
    )
    assert (r.counts.IL_TP, r.counts.IL_TN, r.counts.ground_truths, r.counts.crowd_ignored) == (1, 2, 1, 2)


def test_non_exhaustive_pairs_are_skipped_in_any_file(tmp_path: Path) -> None:
    pairs = {1: [{"segmentation": A}], 2: [{"segmentation": A}], 3: []}
    first = gt_file(tmp_path / "a.json", pairs, not_exhaustive=(1,))
    second = gt_file(tmp_path / "b.json", pairs, not_exhaustive=(2,))
    preds = write_json(tmp_path / "p.json", [pred(1, 0.9, B), pred(2, 0.9, B)])
    assert evaluate_images([first], preds).counts.excluded_not_exhaustive == 1
    r = evaluate_images([first, second], preds)
    assert (r.counts.pairs, r.counts.excluded_not_exhaustive, r.counts.IL_TN) == (1, 2, 1)


def test_no_negative_pairs_gives_zero_mcc_and_says_so(tmp_path: Path) -> None:
    gt = gt_file(tmp_path / "gt.json", {1: [{"segmentation": A}], 2: [{"segmentation": B}]})
    r = evaluate_images([gt], write_json(tmp_path / "p.json", [pred(1, 0.9, A), pred(2, 0.9, B)]))
    assert r.pmF1 == pytest.approx(100 * f1(2, 0, 0), abs=1e-9)
    assert r.IL_MCC == 0.0 and r.cgF1 == 0.0
    assert any("no negative pairs" in w for w in r.warnings)


def test_positive_macro_f1_is_minus_one_without_positive_matches(tmp_path: Path) -> None:
    gt = gt_file(tmp_path / "gt.json", {1: [{"segmentation": A}], 2: []})
    r = evaluate_images([gt], write_json(tmp_path / "p.json", [pred(2, 0.9, A)]))
    assert (r.counts.IL_FN, r.counts.IL_FP) == (1, 1)
    assert r.positive_macro_F1 == -1.0 and r.per_threshold.positive_macro_F1 == [-1.0] * 10


def test_empty_prediction_file_is_all_misses(tmp_path: Path) -> None:
    gt = gt_file(tmp_path / "gt.json", {1: [{"segmentation": A}, {"segmentation": B}], 2: []})
    r = evaluate_images([gt], write_json(tmp_path / "p.json", []))
    assert (r.counts.IL_FN, r.counts.IL_TN, r.per_threshold.FN) == (1, 1, [2] * 10)
    assert r.cgF1 == 0.0 and r.recall == 0.0


def test_oracle_picks_the_best_file_per_pair(tmp_path: Path) -> None:
    """Pair 1: file b's ground truth matches the prediction, a's does not -> b. Pair 2: a has a ground
    truth and there is no prediction (IL_FN); under b the pair is empty, which counts as perfect -> b
    (IL_TN). Pair 3: a negative in both."""
    a = gt_file(tmp_path / "a.json", {1: [{"segmentation": A}], 2: [{"segmentation": B}], 3: []})
    b = gt_file(tmp_path / "b.json", {1: [{"segmentation": B}], 2: [], 3: []})
    preds = write_json(tmp_path / "p.json", [pred(1, 0.9, B)])
    only_a = evaluate_images([a], preds)
    assert (only_a.counts.IL_TP, only_a.counts.IL_FN, only_a.per_threshold.TP) == (1, 1, [0] * 10)
    r = evaluate_images([a, b], preds)
    assert (r.counts.IL_TP, r.counts.IL_FN, r.counts.IL_TN, r.per_threshold.TP) == (1, 0, 2, [1] * 10)
    assert r.gt_files == 2


def test_hungarian_assignment_beats_greedy() -> None:
    ious = np.array([[0.9, 0.6], [0.6, 0.0]])  # greedy takes 0.9 and is left with 0.0
    assert sorted(matched_ious(ious).tolist()) == [0.6, 0.6]
    assert matched_ious(np.array([[0.3, 0.7, 0.2]])).tolist() == [0.7]
    assert IOU_THRESHOLDS.tolist() == pytest.approx([0.5 + 0.05 * i for i in range(10)])


def test_box_iou(tmp_path: Path) -> None:
    gt = write_json(
        tmp_path / "gt.json",
        {
            "images": [
                {"id": 1, "height": H, "width": W, "is_instance_exhaustive": True},
                {"id": 2, "height": H, "width": W, "is_instance_exhaustive": True},
            ],
            "annotations": [{"id": 1, "image_id": 1, "bbox": [0, 0, 4, 4], "segmentation": A}],
            "categories": [{"id": 1}],
        },
    )
    # IoU of [0,0,4,4] and [0,0,4,3] = 12/16 = 0.75: a true positive up to 0.75 inclusive
    preds = write_json(tmp_path / "p.json", [{"image_id": 1, "score": 0.9, "bbox": [0, 0, 4, 3]}])
    r = evaluate_images([gt], preds, "bbox")
    assert r.per_threshold.TP == [1] * 6 + [0] * 4


def video_gt(tmp_path: Path, masklets: list[list[dict[str, Any] | None]], frames: int = 3) -> Path:
    return write_json(
        tmp_path / "vgt.json",
        {
            "videos": [{"id": 1, "height": H, "width": W, "length": frames}],
            "annotations": [
                {"id": i + 1, "video_id": 1, "category_id": 1, "segmentations": m, "bboxes": [None] * frames}
                for i, m in enumerate(masklets)
            ],
            "video_np_pairs": [
                {"video_id": 1, "category_id": 1, "num_masklets": len(masklets)},
                {"video_id": 1, "category_id": 2, "num_masklets": 0},
            ],
        },
    )


def test_masklet_iou_sums_intersections_and_unions_over_frames(tmp_path: Path) -> None:
    """Frame 0: identical 25-pixel squares (25/25); frame 1: ground truth absent, a 4-pixel prediction
    (0/4); frame 2: the prediction is half of a 20-pixel ground truth (10/20). Summed over frames:
    intersections 25 + 0 + 10 = 35 over unions 25 + 4 + 20 = 49, IoU 0.714 (a mean of per-frame IoUs
    would be 0.5). Pair 2 is a negative (no masklet) with a prediction: IL_FP."""
    half = rect(0, 2, 0, 5)  # 10 pixels inside the 20-pixel rect(0, 4, 0, 5)
    gt = video_gt(tmp_path, [[A, None, rect(0, 4, 0, 5)]])
    preds = [
        {"video_id": 1, "category_id": 1, "score": 0.9, "segmentations": [A, rect(9, 10, 0, 4), half]},
        {"video_id": 1, "category_id": 2, "score": 0.6, "segmentations": [None, None, A]},
    ]
    r = evaluate_videos(gt, write_json(tmp_path / "vp.json", preds))
    assert (r.unit, r.counts.pairs, r.counts.IL_TP, r.counts.IL_FP) == ("video", 2, 1, 1)
    assert r.per_threshold.TP == [1] * 5 + [0] * 5  # 0.50 ... 0.70


def test_more_than_255_masks_in_one_file(tmp_path: Path) -> None:
    """pycocotools 2.0.11 cannot take more than 255 masks in one ``area`` call: 30 masklets x 10 frames."""
    masklets = [[rect(i % 8, i % 8 + 2, t % 8, t % 8 + 2) for t in range(10)] for i in range(30)]
    gt = video_gt(tmp_path, masklets, frames=10)
    preds = [{"video_id": 1, "category_id": 1, "score": 0.9, "segmentations": m} for m in masklets]
    r = evaluate_videos(gt, write_json(tmp_path / "vp.json", preds))
    assert r.counts.IL_TP == 1 and r.per_threshold.TP == [30] * 10


def test_masklets_empty_in_every_frame_have_iou_one(tmp_path: Path) -> None:
    gt = video_gt(tmp_path, [[None, None, None]])
    preds = [
        {
            "video_id": 1,
            "category_id": 1,
            "score": 0.9,
            "segmentations": [None, None, None],
            "bboxes": [None, None, None],
        }
    ]
    pred_path = write_json(tmp_path / "vp.json", preds)
    for iou_type in ("segm", "bbox"):  # (the reference asserts on empty boxes; 1 is the rule for masks)
        r = evaluate_videos(gt, pred_path, iou_type)
        assert r.per_threshold.TP == [1] * 10, iou_type


def test_assignment_solver_is_scipys() -> None:
    """The extension loaded from its file gives scipy.optimize's answers, ties included."""
    import scipy.optimize

    from components.evaluate.matching import linear_sum_assignment

    rng = np.random.default_rng(0)
    for _ in range(200):
        shape = tuple(int(v) for v in rng.integers(2, 7, 2))
        ious = np.round(rng.random(shape), 1)  # many ties
        ours, theirs = linear_sum_assignment()(-ious), scipy.optimize.linear_sum_assignment(-ious)
        assert all(np.array_equal(a, b) for a, b in zip(ours, theirs, strict=True))


def test_parallel_tasks_keep_their_order_and_raise(tmp_path: Path) -> None:
    from functools import partial

    from components.evaluate.parallel import run_all

    assert run_all([partial(pow, i, 2) for i in range(7)], workers=3) == [i * i for i in range(7)]

    def bad() -> int:
        raise ValueError("task 2 failed")

    with pytest.raises(ValueError, match="task 2"):
        run_all([lambda: 1, lambda: 2, bad, lambda: 4], workers=2)
