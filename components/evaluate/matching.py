"""One-to-one matching of detections to ground truths, per (media, noun phrase) pair.

For each pair that has both kept detections and ground truths, the Hungarian
assignment (scipy) maximises the summed IoU; at IoU threshold t the pair's true
positives are the matched pairs with IoU >= t. IoUs come in batches of pairs (one
pycocotools call per batch), and everything after the assignment is vectorised
over all pairs at once. Batches are spread over worker processes when there are
enough pairs for it to pay.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache, partial

import numpy as np

from components.evaluate.parallel import available_cpus, run_all

#: The SAM 3 / COCO IoU thresholds 0.50:0.05:0.95, exactly as pycocotools builds them.
IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)

BATCH_PAIRS = 24
#: Below this many pairs per worker, starting processes costs more than it saves.
MIN_PAIRS_PER_WORKER = 2_500

BlockIous = Callable[[np.ndarray], Sequence[np.ndarray]]
"""A batch of pair indices -> each pair's (detections, ground truths) IoU matrix, in the reference's order."""


def matched_ious(ious: np.ndarray) -> np.ndarray:
    """IoUs of the maximum-IoU one-to-one assignment; ious: (D, G) with D, G >= 1."""
    if ious.shape[0] == 1 or ious.shape[1] == 1:
        return np.array([ious.max()])  # a single row or column: the assignment takes its maximum
    rows, cols = linear_sum_assignment()(-ious)
    return ious[rows, cols]


@cache
def linear_sum_assignment() -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """scipy's ``scipy.optimize.linear_sum_assignment``, imported on first use.

    Importing ``scipy.optimize`` takes a few tenths of a second, so the evaluator asks for it while its
    input files load (``cgf1._load``) and not at all when no pair needs an assignment.
    """
    from scipy.optimize import linear_sum_assignment as solve

    return solve


def true_positives(
    n_pairs: int, pairs: np.ndarray, block_ious: BlockIous, workers: int | None = None
) -> np.ndarray:
    """(n_pairs, T) true positives per pair and IoU threshold; zero for pairs not in ``pairs``."""
    if workers is None:
        workers = max(1, min(available_cpus(), len(pairs) // MIN_PAIRS_PER_WORKER))
    batches = [pairs[i : i + BATCH_PAIRS] for i in range(0, len(pairs), BATCH_PAIRS)]
    shares = [batches[w::workers] for w in range(workers)] if workers > 1 else [batches]
    results = run_all([partial(_match, share, block_ious) for share in shares], workers)
    owners = np.concatenate([r[0] for r in results]) if results else np.zeros(0, dtype=np.int64)
    values = np.concatenate([r[1] for r in results]) if results else np.zeros(0)
    tp = np.zeros((n_pairs, len(IOU_THRESHOLDS)), dtype=np.int64)
    for t, threshold in enumerate(IOU_THRESHOLDS):
        tp[:, t] = np.bincount(owners[values >= threshold], minlength=n_pairs)
    return tp


def _match(batches: Sequence[np.ndarray], block_ious: BlockIous) -> tuple[np.ndarray, np.ndarray]:
    """Matched IoU values and the pair each belongs to."""
    owners: list[int] = []
    values: list[float] = []
    for batch in batches:
        for p, ious in zip(batch.tolist(), block_ious(batch), strict=True):
            if ious.shape[0] == 1 or ious.shape[1] == 1:  # the common case, without numpy overhead
                owners.append(p)
                values.append(max(ious.ravel().tolist()))
            else:
                matched = matched_ious(ious).tolist()
                owners.extend([p] * len(matched))
                values.extend(matched)
    return np.array(owners, dtype=np.int64), np.array(values, dtype=np.float64)
