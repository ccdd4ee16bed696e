"""Predictions on dataset records, in the SA-Co results format the evaluator reads.

One entry per detection: ``{image_id, score, bbox, segmentation}`` where
``image_id`` is the (image, noun phrase) pair's id in its source file
(``query.origin_id``), ``score`` = query probability x presence probability (as
the official ``Sam3Processor``; without ``presence``, the query probability
alone, as the official postprocessor's ``use_presence=False``), ``bbox`` the predicted box as normalised
[x, y, w, h] (the SA-Co gold files' convention) and ``segmentation`` a COCO
compressed RLE at the original image size. No ``category_id``: the cgF1
evaluators match within a pair and ignore categories, and a record does not
know the gold file's category ids.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pycocotools import mask as mask_utils
from torch import nn

from components.errors import DataError
from components.model.batch import collate, image_datapoint
from components.schemas import MediaRecord

log = logging.getLogger(__name__)

MASK_CHUNK = 16
"""Detections whose masks are upsampled to the original size at once (bounds memory at full size)."""


@torch.inference_mode()
def predict_records(
    model: nn.Module,
    records: list[MediaRecord],
    *,
    resolution: int,
    score_threshold: float = 0.0,
    presence: bool = True,
    exemplars: int = 0,
) -> list[dict[str, Any]]:
    """Run every text query of every image record; keep detections scoring at least ``score_threshold``.

    The model runs in eval mode on its own device, one image (all its queries) per
    forward; its training mode is restored afterwards. Videos are skipped.
    ``presence`` off: scores leave the presence probability out. ``exemplars`` k: each
    positive query also carries its first k ground-truth boxes as positive box exemplars
    (the text prompt plus k exemplars; components.model.batch.image_datapoint).
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    results: list[dict[str, Any]] = []
    try:
        for record in records:
            if record.kind != "image" or not record.queries:
                continue
            batch = collate(
                [
                    image_datapoint(
                        record, record.queries, resolution=resolution, targets=False, exemplars=exemplars
                    )
                ],
                [q.query_id for q in record.queries],
                [record.media_id],
            ).to(device)
            out = model(batch.data).output[-1][-1]  # the last step of the last (only) stage
            for q, query in enumerate(record.queries):
                try:
                    pair_id = int(query.origin_id)
                except ValueError as exc:
                    raise DataError(
                        f"{query.query_id}: origin_id {query.origin_id!r} is not an integer id"
                    ) from exc
                results.extend(
                    detections(out, q, pair_id, record.height, record.width, score_threshold, presence)
                )
    finally:
        model.train(was_training)
    log.debug("predicted %d detections for %d records", len(results), len(records))
    return results


def detections(
    out: dict[str, torch.Tensor],
    q: int,
    pair_id: int,
    height: int,
    width: int,
    score_threshold: float,
    presence: bool = True,
) -> list[dict[str, Any]]:
    """Detections of find query ``q``.

    out: ``pred_logits`` (Q, N, 1), ``presence_logit_dec`` (Q, 1), ``pred_boxes``
    (Q, N, 4) normalised cx, cy, w, h, ``pred_masks`` (Q, N, h, w) mask logits.
    """
    scores = out["pred_logits"][q, :, 0].sigmoid()
    if presence:
        scores = scores * out["presence_logit_dec"][q].sigmoid()
    keep = torch.nonzero(scores >= score_threshold).flatten()
    if keep.numel() == 0:
        return []
    cx, cy, w, h = out["pred_boxes"][q, keep].float().unbind(-1)
    x0, y0 = (cx - w / 2).clamp(0, 1), (cy - h / 2).clamp(0, 1)
    x1, y1 = (cx + w / 2).clamp(0, 1), (cy + h / 2).clamp(0, 1)
    boxes = torch.stack([x0, y0, x1 - x0, y1 - y0], dim=-1).tolist()
    rles: list[dict[str, Any]] = []
    for chunk in keep.split(MASK_CHUNK):
        logits = out["pred_masks"][q, chunk].float()[:, None]
        masks = F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)[:, 0] > 0
        encoded = mask_utils.encode(np.asfortranarray(masks.permute(1, 2, 0).cpu().numpy().astype(np.uint8)))
        rles.extend({"size": [height, width], "counts": r["counts"].decode("ascii")} for r in encoded)
    return [
        {"image_id": pair_id, "score": float(score), "bbox": [round(v, 6) for v in box], "segmentation": rle}
        for score, box, rle in zip(scores[keep].tolist(), boxes, rles, strict=True)
    ]
