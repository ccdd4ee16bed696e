"""IoU between masklets (per-frame masks) and tracklets (per-frame boxes) of one video.

The IoU of two masklets is the sum over frames of their intersections over the sum
over frames of their unions, 1 when both are empty in every frame: the definition
of ``sam3.eval.ytvis_eval``, which merges masks pairwise frame by frame; here each
frame is one pycocotools call for all (detection, ground truth) pairs at once. The
video evaluation (components.evaluate.video) and the tracker's own measures
(components.evaluate.tracking: masklet and cross-object IoU, which detections start
a new masklet) both use it; a one-frame masklet's IoU is the mask IoU.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pycocotools.mask as mask_utils

from components.masks import areas


def masklet_iou(
    d: list[list[Any]], d_area: list[np.ndarray], g: list[list[Any]], g_area: list[np.ndarray]
) -> np.ndarray:
    """(D, G) masklet IoU: intersections and unions summed over frames.

    d, g: D and G masklets, each a list of T compressed RLEs (an empty mask where the
    object is absent); d_area, g_area: their (T,) pixel counts per frame. Per frame,
    one pycocotools call gives every IoU; the integer intersections come back from it.
    """
    area_d, area_g = np.stack(d_area), np.stack(g_area)  # (D, T), (G, T)
    inter = np.zeros((len(d), len(g)), dtype=np.int64)
    crowd = np.zeros(len(g), dtype=np.uint8)
    for t in np.flatnonzero((area_d > 0).any(axis=0) & (area_g > 0).any(axis=0)):
        iou = np.asarray(mask_utils.iou([m[t] for m in d], [m[t] for m in g], crowd))
        both = area_d[:, t, None] + area_g[None, :, t]
        # iou = i / (a + b - i), so i = iou (a + b) / (1 + iou): exact integers back
        inter += np.rint(iou * both / (1.0 + iou)).astype(np.int64)
    union = area_d.sum(axis=1)[:, None] + area_g.sum(axis=1)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def masklet_ious(d: list[list[Any]], g: list[list[Any]]) -> np.ndarray:
    """(D, G) masklet IoU of D and G masklets, each a list of T checked compressed RLEs (``masklet_iou``
    with the areas measured here)."""
    return masklet_iou(d, [areas(m) for m in d], g, [areas(m) for m in g])


def tracklet_iou(d: np.ndarray, g: np.ndarray) -> np.ndarray:
    """(D, G) tracklet IoU from (D, T, 4) and (G, T, 4) xywh boxes (zeros where absent).

    In float32, operation for operation as the reference (torch, default dtype), so
    that IoUs landing exactly on a threshold fall on the same side. Two tracklets
    without a box in any frame have IoU 1 (the reference asserts instead).
    """
    d, g = d.astype(np.float32)[:, None], g.astype(np.float32)[None, :]
    d_tl, d_br = d[..., :2], d[..., :2] + d[..., 2:]
    g_tl, g_br = g[..., :2], g[..., :2] + g[..., 2:]
    d_wh, g_wh = d_br - d_tl, g_br - g_tl
    overlap = np.clip(np.minimum(d_br, g_br) - np.maximum(d_tl, g_tl), 0, None)
    inter = overlap[..., 0] * overlap[..., 1]
    union = d_wh[..., 0] * d_wh[..., 1] + g_wh[..., 0] * g_wh[..., 1] - inter
    inter_sum, union_sum = inter.sum(axis=-1), union.sum(axis=-1)
    safe = np.where(union_sum > 0, union_sum, np.float32(1))
    return np.where(union_sum > 0, inter_sum / safe, np.float32(1)).astype(np.float64)
