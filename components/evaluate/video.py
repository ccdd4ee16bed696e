"""Video-level SAM 3 evaluation: the same metrics over (video, noun phrase) pairs.

Ground truth is SA-Co video (YT-VIS-like) JSON: ``videos[]`` (``id, height, width``
and ``length`` or ``file_names``), ``annotations[]`` (masklets: ``video_id,
category_id``, per-frame ``segmentations`` / ``bboxes``, null where the object is
absent, ``iscrowd``) and ``video_np_pairs[]`` (``video_id, category_id``); a pair
with no masklet is a negative. Predictions: a list of ``{video_id, category_id,
score, segmentations, bboxes}``, one per predicted masklet.

The IoU of two masklets is the sum over frames of their intersections over the
sum over frames of their unions (1 when both are empty in every frame), the same
as ``sam3.eval.ytvis_eval``. Matching and accumulation are those of the images.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NotRequired

import numpy as np
from typing_extensions import TypedDict

from components import masks
from components.errors import ConfigError, DataError
from components.evaluate.masklet_iou import masklet_iou, tracklet_iou
from components.evaluate.matching import true_positives
from components.evaluate.metrics import PairOutcomes, summarize
from components.evaluate.records import (
    Box,
    FiniteFloat,
    IouType,
    Rle,
    Size,
    adapter,
    describe_in_list,
    field_path,
    load_validated,
    require_files,
)
from components.evaluate.regions import mask_list
from components.evaluate.result import EvaluationResult

logger = logging.getLogger(__name__)

SCORE_THRESHOLD = 0.5


class Video(TypedDict):
    id: int
    height: Size
    width: Size
    length: NotRequired[int]
    file_names: NotRequired[list[str]]


class VideoNpPair(TypedDict):
    video_id: int
    category_id: int


class Masklet(TypedDict):
    video_id: int
    category_id: int
    segmentations: NotRequired[list[Rle | None] | None]
    bboxes: NotRequired[list[Box | None] | None]
    iscrowd: NotRequired[bool]


class PredictedMasklet(Masklet):
    score: FiniteFloat


class VideoGtFile(TypedDict):
    videos: list[Video]
    annotations: NotRequired[list[Masklet]]
    video_np_pairs: NotRequired[list[VideoNpPair]]


@dataclass(frozen=True)
class Masklets:
    """Masklets grouped by pair: pair p's are rows ``starts[p]:starts[p + 1]``.

    regions[m][t]: frame t of masklet m, a compressed RLE (segm) or an xywh box (bbox);
    areas[m]: (T,) pixels per frame (segm only).
    """

    starts: np.ndarray
    regions: list[list[Any]]
    areas: list[np.ndarray]
    keep: np.ndarray


def evaluate_videos(
    gt_path: Path, pred_path: Path, iou_type: IouType = "segm", workers: int | None = None
) -> EvaluationResult:
    """SAM 3 video metrics of ``pred_path`` against one SA-Co video ground-truth file."""
    if iou_type not in ("segm", "bbox"):
        raise ConfigError(f"unknown IoU type {iou_type!r}: use segm or bbox")
    gt_path, pred_path = Path(gt_path), Path(pred_path)
    require_files([gt_path, pred_path])
    data = load_validated(adapter(VideoGtFile), gt_path, _describe_gt)
    videos = {v["id"]: v for v in data["videos"]}
    if len(videos) != len(data["videos"]):
        raise DataError(f"{gt_path}: a video id appears more than once")
    annotations = data.get("annotations", [])
    if "video_np_pairs" not in data:
        logger.warning("%s has no video_np_pairs: only pairs with masklets are known, none negative", gt_path)
    pairs: dict[tuple[int, int], int] = {}
    for record in [*data.get("video_np_pairs", []), *annotations]:
        if record["video_id"] not in videos:
            raise DataError(f"{gt_path}: unknown video_id {record['video_id']} in {_pair(record)}")
        pairs.setdefault((record["video_id"], record["category_id"]), len(pairs))
    if not pairs:
        raise DataError(f"{gt_path}: no (video, noun phrase) pairs to evaluate")

    preds = load_validated(
        adapter(list[PredictedMasklet]), pred_path, describe_in_list("prediction", "video_id")
    )
    for i, p in enumerate(preds):
        if (p["video_id"], p["category_id"]) not in pairs:
            raise DataError(f"{pred_path}: prediction #{i} is for {_pair(p)}, not a pair of {gt_path}")

    frames = _frame_counts(data["videos"])
    not_crowd = np.fromiter((not a.get("iscrowd", False) for a in annotations), bool, len(annotations))
    kept = np.fromiter((p["score"] >= SCORE_THRESHOLD for p in preds), bool, len(preds))
    gts = _masklets(gt_path, "annotation", annotations, not_crowd, pairs, videos, frames, iou_type)
    dts = _masklets(pred_path, "prediction", preds, kept, pairs, videos, frames, iou_type)
    outcomes = _outcomes(gts, dts, len(pairs), iou_type, workers)
    logger.info("evaluated %d video-NP pairs of %s", len(pairs), pred_path)
    return summarize(
        outcomes,
        unit="video",
        iou_type=iou_type,
        score_threshold=SCORE_THRESHOLD,
        gt_files=1,
        excluded=0,
        predictions=len(preds),
        crowd_ignored=int((~gts.keep).sum()),
    )


def _outcomes(
    gts: Masklets, dts: Masklets, n_pairs: int, iou_type: IouType, workers: int | None
) -> PairOutcomes:
    kept_gt, kept_dt = np.flatnonzero(gts.keep), np.flatnonzero(dts.keep)
    gt_starts, dt_starts = np.searchsorted(kept_gt, gts.starts), np.searchsorted(kept_dt, dts.starts)
    n_gt, n_dt = np.diff(gt_starts), np.diff(dt_starts)

    def block_ious(batch: np.ndarray) -> list[np.ndarray]:
        return [iou_matrix(p) for p in batch.tolist()]

    def iou_matrix(p: int) -> np.ndarray:
        d = kept_dt[dt_starts[p] : dt_starts[p + 1]]
        g = kept_gt[gt_starts[p] : gt_starts[p + 1]]
        if iou_type == "bbox":
            return tracklet_iou(
                np.asarray([dts.regions[i] for i in d]), np.asarray([gts.regions[i] for i in g])
            )
        return masklet_iou(
            [dts.regions[i] for i in d],
            [dts.areas[i] for i in d],
            [gts.regions[i] for i in g],
            [gts.areas[i] for i in g],
        )

    both = np.flatnonzero((n_dt > 0) & (n_gt > 0))
    return PairOutcomes(tp=true_positives(n_pairs, both, block_ious, workers), n_gt=n_gt, n_dt=n_dt)


def _masklets(
    path: Path,
    what: str,
    records: Sequence[Masklet],
    keep: np.ndarray,
    pairs: dict[tuple[int, int], int],
    videos: dict[int, Video],
    frames: dict[int, int],
    iou_type: IouType,
) -> Masklets:
    """Check masklets (frame count, mask sizes and RLEs) and group them by pair, file order kept.

    keep: (N,) which records take part in matching (not crowd; score above threshold).
    """
    pair = np.fromiter((pairs[(r["video_id"], r["category_id"])] for r in records), np.int64, len(records))
    order = np.argsort(pair, kind="stable")
    field = "segmentations" if iou_type == "segm" else "bboxes"
    regions: list[list[Any]] = []
    for i in order:
        r = records[i]
        per_frame = r.get(field)
        if per_frame is None:
            raise DataError(f"{path}: {what} #{i} ({_pair(r)}) has no {field}")
        expected = frames.setdefault(r["video_id"], len(per_frame))
        if len(per_frame) != expected:
            raise DataError(
                f"{path}: {what} #{i} ({_pair(r)}) has {len(per_frame)} frames, the video {expected}"
            )
        regions.append(list(per_frame))
    areas: list[np.ndarray] = []
    if iou_type == "bbox":
        regions = [[box if box is not None else (0.0, 0.0, 0.0, 0.0) for box in m] for m in regions]
    else:
        _check_masks(path, what, records, order, regions, videos)
        flat = [rle for m in regions for rle in m]
        flat_areas = masks.areas(flat)
        bounds = np.cumsum([0] + [len(m) for m in regions])
        areas = [flat_areas[bounds[k] : bounds[k + 1]] for k in range(len(regions))]
    return Masklets(
        starts=np.searchsorted(pair[order], np.arange(len(pairs) + 1)),
        regions=regions,
        areas=areas,
        keep=keep[order],
    )


def _check_masks(
    path: Path,
    what: str,
    records: Sequence[Masklet],
    order: np.ndarray,
    regions: list[list[Any]],
    videos: dict[int, Video],
) -> None:
    """Validate every present frame mask in place (compressed), fill absent frames with empty masks."""
    where = [(k, t) for k, m in enumerate(regions) for t, rle in enumerate(m) if rle is not None]
    sizes = np.array(
        [
            (videos[records[order[k]]["video_id"]]["height"], videos[records[order[k]]["video_id"]]["width"])
            for k, _ in where
        ],
        dtype=np.int64,
    ).reshape(-1, 2)

    def fail(j: int, problem: str) -> DataError:
        k, t = where[j]
        i = int(order[k])
        return DataError(f"{path}: {what} #{i} ({_pair(records[i])}) frame {t}: {problem}")

    checked = mask_list([regions[k][t] for k, t in where], fail, sizes)
    for (k, t), rle in zip(where, checked, strict=True):
        regions[k][t] = rle
    for k, m in enumerate(regions):
        video = videos[records[order[k]]["video_id"]]
        for t, rle in enumerate(m):
            if rle is None:
                m[t] = masks.empty_rle(video["height"], video["width"])


def _frame_counts(videos: list[Video]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for v in videos:
        if "length" in v:
            counts[v["id"]] = v["length"]
        elif "file_names" in v:
            counts[v["id"]] = len(v["file_names"])
    return counts


def _pair(record: Any) -> str:
    return f"video_id={record.get('video_id')!r}, category_id={record.get('category_id')!r}"


def _describe_gt(document: Any, loc: tuple[Any, ...]) -> str:
    if len(loc) >= 2 and isinstance(loc[1], int) and isinstance(document, dict):
        record = document[loc[0]][loc[1]]
        label = f" ({_pair(record)})" if isinstance(record, dict) else ""
        return f"{loc[0]}[{loc[1]}]{label}: {field_path(loc[2:])}"
    return field_path(loc)
