"""Image-level SAM 3 evaluation: cgF1, IL_MCC, pmF1 over (image, noun phrase) pairs.

Same numbers as Meta's reference (``sam3.eval.cgf1_eval.CGF1Evaluator``), computed
in one pass over all pairs instead of one COCOeval run per pair:

- only pairs that every ground-truth file marks ``is_instance_exhaustive`` count;
- predictions scoring below 0.5 are dropped, crowd ground truths are ignored;
- per pair, IoU (mask RLE or xywh box, pycocotools) then a Hungarian assignment;
- with several ground-truth files (annotators), each pair is scored against the
  file that suits the predictions best ("oracle", see ``metrics.select_oracle``).

The input files load in parallel processes when they are large enough to pay.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from components.errors import ConfigError, DataError
from components.evaluate.image_inputs import (
    GroundTruth,
    Predictions,
    load_ground_truth,
    load_predictions,
    pair_index,
    pair_predictions,
)
from components.evaluate.matching import linear_sum_assignment, true_positives
from components.evaluate.metrics import PairOutcomes, select_oracle, summarize
from components.evaluate.parallel import available_cpus, run_all
from components.evaluate.records import IouType, require_files
from components.evaluate.result import EvaluationResult

logger = logging.getLogger(__name__)

SCORE_THRESHOLD = 0.5
#: Load files in parallel processes from this many bytes of JSON on.
PARALLEL_LOAD_BYTES = 8_000_000


def evaluate_images(
    gt_paths: Sequence[Path],
    pred_path: Path,
    iou_type: IouType = "segm",
    workers: int | None = None,
    score_threshold: float = SCORE_THRESHOLD,
) -> EvaluationResult:
    """SAM 3 image metrics of ``pred_path`` against one or more SA-Co ground-truth files.

    workers: processes for loading and matching (None: from the input size and CPUs).
    score_threshold: the score a prediction needs to count; the SAM 3 protocol's 0.5 unless a
    diagnostic asks where a model's scores would have needed it (benchmarks/score_thresholds.py).
    """
    if not 0.0 < score_threshold <= 1.0:
        raise ConfigError(f"score threshold {score_threshold} must lie in (0, 1]")
    if not gt_paths:
        raise ConfigError("evaluate needs at least one ground-truth file")
    if iou_type not in ("segm", "bbox"):
        raise ConfigError(f"unknown IoU type {iou_type!r}: use segm or bbox")
    require_files([*gt_paths, pred_path])
    started = time.perf_counter()
    load_workers = _load_workers(gt_paths, pred_path, workers)
    gts, preds = _load([Path(p) for p in gt_paths], Path(pred_path), iou_type, load_workers)
    logger.debug(
        "loaded %d file(s) in %.2f s (%d process(es))",
        len(gts) + 1,
        time.perf_counter() - started,
        load_workers,
    )
    # position of each of the first file's pairs in every file
    aligned = [np.arange(len(gts[0].pair_ids))] + [_align(gts[0], other) for other in gts[1:]]
    pred_pair, pred_order = pair_predictions(preds, gts[0])

    exhaustive = np.logical_and.reduce([gt.exhaustive[index] for gt, index in zip(gts, aligned, strict=True)])
    evaluated = np.flatnonzero(exhaustive)
    if len(evaluated) == 0:
        raise DataError(f"{gts[0].path}: no instance-exhaustive pairs to evaluate")
    logger.info(
        "evaluating %d pairs (%d not exhaustive, skipped) of %s against %d ground-truth file(s)",
        len(evaluated),
        len(exhaustive) - len(evaluated),
        pred_path,
        len(gts),
    )
    kept = pred_order[preds.scores[pred_order] >= score_threshold]  # by pair, then category, then file order
    dt_starts = np.searchsorted(pred_pair[kept], np.arange(len(exhaustive) + 1))
    per_file = [
        _outcomes(gt, index[evaluated], preds, kept, dt_starts, evaluated, workers)
        for gt, index in zip(gts, aligned, strict=True)
    ]
    logger.debug("matched in %.2f s", time.perf_counter() - started)
    outcomes = per_file[0] if len(per_file) == 1 else select_oracle(per_file)
    pair_of_annotation = np.repeat(np.arange(len(exhaustive)), np.diff(gts[0].starts))
    crowd_per_pair = np.bincount(pair_of_annotation[gts[0].crowd], minlength=len(exhaustive))
    return summarize(
        outcomes,
        unit="image",
        iou_type=iou_type,
        score_threshold=score_threshold,
        gt_files=len(gts),
        excluded=len(exhaustive) - len(evaluated),
        predictions=len(preds.scores),
        crowd_ignored=int(crowd_per_pair[evaluated].sum()),
    )


def _load_workers(gt_paths: Sequence[Path], pred_path: Path, workers: int | None) -> int:
    if workers is not None:
        return workers
    size = sum(Path(p).stat().st_size for p in [*gt_paths, pred_path])
    return available_cpus() if size >= PARALLEL_LOAD_BYTES else 1


def _load(
    gt_paths: list[Path], pred_path: Path, iou_type: IouType, workers: int
) -> tuple[list[GroundTruth], Predictions]:
    """Every file, loaded and checked (in parallel processes when ``workers`` > 1, largest first)."""
    tasks: list[Any] = [partial(load_ground_truth, p, iou_type) for p in gt_paths]
    tasks.append(partial(load_predictions, pred_path, iou_type))
    sizes = [p.stat().st_size for p in [*gt_paths, pred_path]]
    order = sorted(range(len(tasks)), key=lambda i: -sizes[i])
    loaded = run_all([tasks[i] for i in order], workers, meanwhile=linear_sum_assignment)
    by_task = dict(zip(order, loaded, strict=True))
    return [by_task[i] for i in range(len(gt_paths))], by_task[len(gt_paths)]


def _outcomes(
    gt: GroundTruth,
    gt_pairs: np.ndarray,
    preds: Predictions,
    kept: np.ndarray,
    dt_starts: np.ndarray,
    dt_pairs: np.ndarray,
    workers: int | None,
) -> PairOutcomes:
    """Match kept predictions to non-crowd ground truths, pair by pair.

    gt_pairs, dt_pairs: the evaluated pairs as indices into ``gt``'s pairs and into
    the prediction grouping (``kept[dt_starts[p]:dt_starts[p + 1]]`` are pair p's).
    """
    import pycocotools.mask as mask_utils

    not_crowd = np.flatnonzero(~gt.crowd)
    gt_rows = gt.order[not_crowd]  # ground-truth regions, grouped by pair
    gt_starts = np.searchsorted(not_crowd, gt.starts)
    n_dt = np.diff(dt_starts)[dt_pairs]
    n_gt = np.diff(gt_starts)[gt_pairs]
    segm = gt.regions.iou_type == "segm"

    def block_ious(batch: np.ndarray) -> list[np.ndarray]:
        """One pycocotools call for a batch of pairs. Masks of the k-th pair get the width
        ``base + k`` (at least the true one): pycocotools then skips comparing masks of
        different pairs (different sizes), and within a pair the IoU is unchanged (the
        width only enters that size check; positions come from the height)."""
        d_rows, g_rows, d_cut, g_cut = [], [], [0], [0]
        for k in batch.tolist():
            p, q = dt_pairs[k], gt_pairs[k]
            d_rows.extend(kept[dt_starts[p] : dt_starts[p + 1]].tolist())
            g_rows.extend(gt_rows[gt_starts[q] : gt_starts[q + 1]].tolist())
            d_cut.append(len(d_rows))
            g_cut.append(len(g_rows))
        d_widths = g_widths = None
        if segm:
            base = int(gt.regions.sizes[g_rows, 1].max()) + 1
            d_widths = np.repeat(base + np.arange(len(batch)), np.diff(d_cut)).tolist()
            g_widths = np.repeat(base + np.arange(len(batch)), np.diff(g_cut)).tolist()
        ious = np.asarray(
            mask_utils.iou(
                preds.regions.for_iou(d_rows, d_widths),
                gt.regions.for_iou(g_rows, g_widths),
                np.zeros(len(g_rows), dtype=np.uint8),
            )
        )
        return [ious[d_cut[k] : d_cut[k + 1], g_cut[k] : g_cut[k + 1]] for k in range(len(batch))]

    both = np.flatnonzero((n_dt > 0) & (n_gt > 0))
    tp = true_positives(len(dt_pairs), both, block_ious, workers)
    return PairOutcomes(tp=tp, n_gt=n_gt, n_dt=n_dt)


def _align(first: GroundTruth, other: GroundTruth) -> np.ndarray:
    """Index into ``other`` of each pair of ``first``; annotators' files hold the same pairs and sizes."""
    index = pair_index(other.pair_ids, first.pair_ids)
    missing = np.flatnonzero(index < 0)
    if len(missing):
        raise DataError(
            f"{other.path}: lacks pair {first.pair_ids[missing[0]]} of {first.path}; "
            "ground-truth files must hold the same pairs"
        )
    if len(other.pair_ids) != len(first.pair_ids):
        extra = np.setdiff1d(other.pair_ids, first.pair_ids)[0]
        raise DataError(
            f"{other.path}: has pair {extra}, absent from {first.path}; "
            "ground-truth files must hold the same pairs"
        )
    differs = np.flatnonzero((other.sizes[index] != first.sizes).any(axis=1))
    if len(differs):
        raise DataError(
            f"{other.path}: image size of pair {first.pair_ids[differs[0]]} differs from {first.path}"
        )
    return index
