"""From per-pair matching outcomes to the SAM 3 metrics (cgF1, IL_MCC, pmF1, ...).

Definitions (the unit is a (media, noun phrase) pair; T IoU thresholds):
- image level: gt>0 & pred>0 IL_TP, gt=0 & pred>0 IL_FP, gt=0 & pred=0 IL_TN,
  gt>0 & pred=0 IL_FN;
- TP, FP = #pred - TP, FN = #gt - TP summed over all pairs (an IL_TN pair adds 0);
  pmFP sums FP over IL_TP pairs only;
- precision = TP/(TP+FP+1e-4), recall = TP/(TP+FN+1e-4),
  F1 = 2PR/(P+R+1e-4); pm_precision and pmF1 likewise with pmFP;
- positive_macro_F1: mean over IL_TP pairs of the pair's own F1;
- IL_MCC = (TP.TN - FP.FN) / (sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) + 1e-6) on pairs;
- cgF1(t) = pmF1(t) x IL_MCC.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from components.evaluate.matching import IOU_THRESHOLDS
from components.evaluate.result import EvaluationResult, PairCounts, PerThreshold

logger = logging.getLogger(__name__)

EPS = 1e-4  # smoothing of the detection-level ratios
IL_EPS = 1e-6  # smoothing of the image-level ratios


@dataclass(frozen=True)
class PairOutcomes:
    """Matching results of P pairs: tp (P, T) true positives, n_gt (P,) kept ground truths, n_dt (P,)."""

    tp: np.ndarray
    n_gt: np.ndarray
    n_dt: np.ndarray

    def take(self, index: np.ndarray) -> PairOutcomes:
        return PairOutcomes(self.tp[index], self.n_gt[index], self.n_dt[index])


def _f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    precision = tp / (tp + fp + EPS)
    recall = tp / (tp + fn + EPS)
    return 2 * precision * recall / (precision + recall + EPS)


def local_f1(o: PairOutcomes) -> np.ndarray:
    """(P, T) each pair's own F1 at each threshold."""
    return _f1(o.tp, o.n_dt[:, None] - o.tp, o.n_gt[:, None] - o.tp)


def select_oracle(per_file: list[PairOutcomes]) -> PairOutcomes:
    """Per pair, the ground-truth file under which the predictions score best.

    Files are visited in order; a later file replaces the best so far when both have
    a score and its mean F1 over thresholds is strictly higher, or when the pair has
    neither predictions nor ground truth under it (that counts as perfect).
    """
    best = np.zeros(len(per_file[0].n_gt), dtype=np.int64)
    scored = np.stack([(o.n_gt > 0) | (o.n_dt > 0) for o in per_file])
    mean_f1 = np.stack([local_f1(o).mean(axis=1) for o in per_file])
    pairs = np.arange(len(best))
    for f in range(1, len(per_file)):
        both = scored[best, pairs] & scored[f]
        better = np.where(both, mean_f1[f] > mean_f1[best, pairs], ~scored[f])
        best = np.where(better, f, best)
    return PairOutcomes(
        tp=np.stack([o.tp for o in per_file])[best, pairs],
        n_gt=np.stack([o.n_gt for o in per_file])[best, pairs],
        n_dt=per_file[0].n_dt,
    )


def summarize(
    o: PairOutcomes,
    *,
    unit: str,
    iou_type: str,
    score_threshold: float,
    gt_files: int,
    excluded: int,
    predictions: int,
    crowd_ignored: int,
) -> EvaluationResult:
    """Accumulate pair outcomes into the metrics document."""
    il_tp = (o.n_gt > 0) & (o.n_dt > 0)
    il_fp = (o.n_gt == 0) & (o.n_dt > 0)
    il_fn = (o.n_gt > 0) & (o.n_dt == 0)
    il_tn = (o.n_gt == 0) & (o.n_dt == 0)
    fp_pair = o.n_dt[:, None] - o.tp
    tp = o.tp.sum(axis=0)
    fp = fp_pair.sum(axis=0)
    fn = (o.n_gt[:, None] - o.tp).sum(axis=0)
    pm_fp = fp_pair[il_tp].sum(axis=0)

    precision = tp / (tp + fp + EPS)
    recall = tp / (tp + fn + EPS)
    f1 = 2 * precision * recall / (precision + recall + EPS)
    pm_precision = tp / (tp + pm_fp + EPS)
    pm_f1 = 2 * pm_precision * recall / (pm_precision + recall + EPS)
    n_positive = int(il_tp.sum())
    if n_positive:
        macro_f1 = local_f1(o.take(il_tp)).sum(axis=0) / n_positive
    else:
        macro_f1 = np.full(len(IOU_THRESHOLDS), -1.0)

    n_tp, n_fp, n_fn, n_tn = int(il_tp.sum()), int(il_fp.sum()), int(il_fn.sum()), int(il_tn.sum())
    il_recall = n_tp / (n_tp + n_fn + IL_EPS)
    il_precision = n_tp / (n_tp + n_fp + IL_EPS)
    il_f1 = 2 * il_precision * il_recall / (il_precision + il_recall + IL_EPS)
    il_fpr = n_fp / (n_fp + n_tn + IL_EPS)
    il_mcc = float(n_tp * n_tn - n_fp * n_fn) / (
        (float(n_tp + n_fp) * float(n_tp + n_fn) * float(n_tn + n_fp) * float(n_tn + n_fn)) ** 0.5 + IL_EPS
    )
    cg_f1 = pm_f1 * il_mcc

    warnings = []
    if n_fp + n_tn == 0:
        warnings.append(
            "no negative pairs (every evaluated pair has ground truth): IL_MCC is 0 by definition, "
            "so cgF1 is 0; evaluate on a set that contains negative noun phrases"
        )
    if n_tp + n_fn == 0:
        warnings.append("no positive pairs (no evaluated pair has ground truth): IL_MCC and cgF1 are 0")
    for message in warnings:
        logger.warning(message)

    i50, i75 = _threshold_index(0.5), _threshold_index(0.75)
    return EvaluationResult.model_validate(
        {
            "cgF1": 100 * float(np.mean(cg_f1)),
            "cgF1@0.5": 100 * float(cg_f1[i50]),
            "cgF1@0.75": 100 * float(cg_f1[i75]),
            "pmF1": 100 * float(np.mean(pm_f1)),
            "pmF1@0.5": 100 * float(pm_f1[i50]),
            "pmF1@0.75": 100 * float(pm_f1[i75]),
            "IL_MCC": il_mcc,
            "IL_precision": il_precision,
            "IL_recall": il_recall,
            "IL_F1": il_f1,
            "IL_FPR": il_fpr,
            "precision": float(np.mean(precision)),
            "recall": float(np.mean(recall)),
            "F1": float(np.mean(f1)),
            "pm_precision": float(np.mean(pm_precision)),
            "positive_macro_F1": float(np.mean(macro_f1)),
            "per_threshold": PerThreshold(
                iou_thresholds=IOU_THRESHOLDS.tolist(),
                cgF1=(100 * cg_f1).tolist(),
                pmF1=(100 * pm_f1).tolist(),
                pm_precision=pm_precision.tolist(),
                precision=precision.tolist(),
                recall=recall.tolist(),
                F1=f1.tolist(),
                positive_macro_F1=macro_f1.tolist(),
                TP=tp.tolist(),
                FP=fp.tolist(),
                FN=fn.tolist(),
                pmFP=pm_fp.tolist(),
            ),
            "counts": PairCounts(
                pairs=len(o.n_gt),
                excluded_not_exhaustive=excluded,
                IL_TP=n_tp,
                IL_FP=n_fp,
                IL_TN=n_tn,
                IL_FN=n_fn,
                predictions=predictions,
                kept_predictions=int(o.n_dt.sum()),
                ground_truths=int(o.n_gt.sum()),
                crowd_ignored=crowd_ignored,
            ),
            "unit": unit,
            "iou_type": iou_type,
            "score_threshold": score_threshold,
            "gt_files": gt_files,
            "warnings": warnings,
        }
    )


def _threshold_index(value: float) -> int:
    return int(np.flatnonzero(value == IOU_THRESHOLDS)[0])
