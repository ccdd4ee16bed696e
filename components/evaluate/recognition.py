"""Threshold-free recognition of an alignment (stage 0) model on the gold pairs.

Every (image, noun phrase) pair of the gold split is scored by the model's
presence logit; the area under the ROC curve says how well present phrases rank
above absent ones (0.5 = chance, 1 = perfect), overall and by phrase length in
words (the bare shapes, one word, are the hardest to learn from scratch).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import torch

from components.evaluate.diagnostics import _auc
from components.schemas import MediaRecord

IMAGES_PER_FORWARD = 25


@torch.inference_mode()
def pair_scores(model: Any, records: list[MediaRecord], resolution: int) -> list[tuple[str, bool, float]]:
    """(noun phrase, present, logit) for every query of every image record, in record order."""
    from components.model.batch import decode_image

    images = [r for r in records if r.kind == "image" and r.queries]
    phrases = sorted({q.noun_phrase for r in images for q in r.queries})
    if not phrases:
        return []
    column = {p: j for j, p in enumerate(phrases)}
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out: list[tuple[str, bool, float]] = []
    try:
        for start in range(0, len(images), IMAGES_PER_FORWARD):
            chunk = images[start : start + IMAGES_PER_FORWARD]
            pixels = torch.stack([decode_image(r, resolution) for r in chunk]).to(device)
            logits = model(pixels, phrases).float().cpu()
            for i, record in enumerate(chunk):
                out.extend(
                    (q.noun_phrase, q.positive, float(logits[i, column[q.noun_phrase]]))
                    for q in record.queries
                )
    finally:
        model.train(was_training)
    return out


def recognition_metrics(model: Any, records: list[MediaRecord], resolution: int) -> dict[str, Any]:
    """``recognition_AUC`` over all gold pairs, ``by_length`` (words -> AUC), and the pair counts."""
    scored = pair_scores(model, records, resolution)
    labels = np.array([present for _, present, _ in scored], dtype=bool)
    scores = np.array([score for _, _, score in scored], dtype=float)
    groups: dict[int, list[int]] = defaultdict(list)
    for i, (phrase, _, _) in enumerate(scored):
        groups[len(phrase.split())].append(i)
    return {
        "recognition_AUC": _auc(labels, scores) if scored else 0.5,
        "by_length": {str(n): _auc(labels[idx], scores[idx]) for n, idx in sorted(groups.items())},
        "pairs": len(scored),
        "positive_pairs": int(labels.sum()),
    }
