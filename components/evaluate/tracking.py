"""Video predictions of the video model, and the tracking evaluation of a video stage.

Two ways to predict masklets for the (video, noun phrase) pairs of a gold set:

- ``detect_and_track`` (end to end, what a user gets): the detector runs on every
  frame with the pair's noun phrase; a detection scoring at least the threshold
  that no current masklet covers (mask IoU below ``new_object_iou``) starts a new
  masklet, prompted with its mask on that frame and tracked to the end of the
  video. The masklet keeps its identity through occlusions as long as the
  tracker's memory holds it. Its score is the detection's.
- ``prompted_masklets`` (the tracker alone): every ground-truth object of a
  positive pair is prompted with its true mask on its first visible frame and
  tracked; score 1. Recognition is given, so video cgF1 then measures tracking
  only. The same prompts drive the "copy the last mask" reference, which repeats
  the prompt mask on every later frame. Beside the masklet IoU it reports the
  cross-object IoU: how alike the masks predicted for two different objects of
  a video are on the same frame. Near 0 for a tracker that follows each object
  (and for the true masks); near 1 for one that has learnt to segment every
  object it sees whatever it was prompted with, which can still beat "copy the
  last mask" on masklet IoU when objects move.

Predictions are SA-Co video results (``{video_id, category_id, score,
segmentations}``, per-frame RLE at the video's size, None where empty), read by
components.evaluate.video.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pycocotools import mask as mask_utils

from components.errors import DataError
from components.evaluate.masklet_iou import masklet_ious
from components.masks import area, encode, encode_frames
from components.model.batch import resize_mask
from components.model.clips import Masklet, decode_frames, full_mask, mask_at, object_masks
from components.model.tracker_io import Prompt
from components.model.video import Sam3VideoModel
from components.progress import Progress
from components.schemas import MediaRecord, Query

log = logging.getLogger(__name__)


def pair_ids(query: Query) -> tuple[int, int]:
    """(video_id, category_id) of a video query, from its ``origin_id`` ``"<video>:<category>"``."""
    try:
        video, category = query.origin_id.split(":")
        return int(video), int(category)
    except ValueError:
        raise DataError(
            f"{query.query_id}: origin_id {query.origin_id!r} is not '<video_id>:<category_id>'"
        ) from None


def _encode(masks: np.ndarray) -> list[Any]:
    """(T, H, W) bool -> per-frame compressed RLE, None for an empty frame."""
    return [encode(m) if m.any() else None for m in masks]


def _upsample(logits: torch.Tensor, height: int, width: int) -> np.ndarray:
    """(B, 1, R, R) mask logits -> (B, H, W) bool."""
    up = F.interpolate(logits.float(), size=(height, width), mode="bilinear", align_corners=False)[:, 0]
    return (up > 0).cpu().numpy()


@dataclass
class Tracked:
    """Per-frame masks (T, H, W) of objects prompted from ground truth, and the true ones, by their true
    masklet (components.model.clips.object_masks)."""

    masks: dict[Masklet, np.ndarray]
    truth: dict[Masklet, np.ndarray]


def first_visible(truth: dict[Masklet, np.ndarray]) -> dict[Masklet, int]:
    """The first frame each true masklet (T, H, W) has pixels on; masklets never visible are left out."""
    return {k: int(np.argmax(m.reshape(len(m), -1).any(axis=1))) for k, m in truth.items() if m.any()}


@torch.inference_mode()
def track_ground_truth(
    model: Sam3VideoModel | None, record: MediaRecord, resolution: int, *, copy_last: bool = False
) -> Tracked:
    """Every object of the record prompted with its true mask on its first visible frame, then tracked.

    ``copy_last``: no model; every later frame repeats the prompt mask (the reference).
    """
    objects = object_masks(record)
    truth = {oid: np.stack([full_mask(record, c) for c in per_frame]) for oid, per_frame in objects.items()}
    starts = first_visible(truth)
    out: dict[Masklet, np.ndarray] = {}
    for oid, start in starts.items():
        masks = np.zeros_like(truth[oid])
        masks[start:] = truth[oid][start]
        out[oid] = masks
    if copy_last or not starts:
        return Tracked(out, truth)
    assert model is not None
    device = next(model.parameters()).device
    features = model.features(decode_frames(record, resolution).to(device))
    for start in sorted(set(starts.values())):
        group = [oid for oid, s in starts.items() if s == start]
        prompt = torch.from_numpy(
            np.stack([mask_at(record, objects[oid][start], resolution) for oid in group])
        )[:, None].float()
        for frame in model.track(features, start, Prompt(masks=prompt.to(device)))[1:]:
            predicted = _upsample(frame.masks, record.height, record.width)
            for row, oid in enumerate(group):
                out[oid][frame.frame] = predicted[row]
    return Tracked(out, truth)


def cross_object_ious(tracked: Tracked) -> list[float]:
    """IoU of the masks predicted for two different objects of one video, per pair and frame after both
    prompts where both masks have pixels."""
    starts = first_visible(tracked.truth)
    keys = [k for k in tracked.masks if k in starts]
    frames = {k: encode_frames(tracked.masks[k]) for k in keys}
    out = []
    for i, a in enumerate(keys):
        for b in keys[i + 1 :]:
            for t in range(max(starts[a], starts[b]) + 1, len(tracked.masks[a])):
                if tracked.masks[a][t].any() and tracked.masks[b][t].any():
                    out.append(float(masklet_ious([[frames[a][t]]], [[frames[b][t]]])[0, 0]))
    return out


@dataclass
class PromptedTracking:
    """What ``prompted_masklets`` found: SA-Co video results, the masklet IoU of each tracked object of a
    positive pair, and the cross-object IoUs (``cross_object_ious``) of every video."""

    results: list[dict[str, Any]]
    ious: list[float]
    cross_ious: list[float]

    @property
    def masklet_iou(self) -> float:
        return _mean(self.ious)

    @property
    def cross_object_iou(self) -> float:
        return _mean(self.cross_ious)


def _mean(values: list[float]) -> float:
    return float(sum(values) / len(values)) if values else 0.0


def prompted_masklets(
    model: Sam3VideoModel | None,
    records: Iterable[MediaRecord],
    resolution: int,
    *,
    copy_last: bool = False,
    progress: Progress | None = None,
) -> PromptedTracking:
    """Every ground-truth object prompted with its true mask on its first visible frame and tracked."""
    records = list(records)
    results: list[dict[str, Any]] = []
    ious: list[float] = []
    cross: list[float] = []
    for done, record in enumerate(records, 1):
        tracked = track_ground_truth(model, record, resolution, copy_last=copy_last)
        cross += cross_object_ious(tracked)
        for query in record.queries:
            if not query.positive:
                continue
            video_id, category_id = pair_ids(query)
            for instance in query.instances:
                key = tuple(instance.masks)
                if key not in tracked.masks:
                    continue  # crowd, or never visible
                masks = tracked.masks[key]
                ious.append(_masklet_iou(masks, tracked.truth[key]))
                results.append(
                    {
                        "video_id": video_id,
                        "category_id": category_id,
                        "score": 1.0,
                        "segmentations": _encode(masks),
                    }
                )
        if progress:
            progress("track" if not copy_last else "copy last mask", done, len(records))
    return PromptedTracking(results, ious, cross)


def _masklet_iou(a: np.ndarray, b: np.ndarray) -> float:
    """The masklet IoU (components.evaluate.masklet_iou) of two (T, H, W) masklets or (H, W) masks."""
    return float(masklet_ious([encode_frames(a)], [encode_frames(b)])[0, 0])


@torch.inference_mode()
def detect_and_track(
    model: Sam3VideoModel,
    records: Iterable[MediaRecord],
    resolution: int,
    *,
    score_threshold: float = 0.5,
    new_object_iou: float = 0.5,
    max_objects: int = 20,
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """End-to-end masklets of every (video, noun phrase) pair: detect on each frame, track new objects."""
    from components.model.batch import collate, image_datapoint
    from components.model.predict import detections

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    records = list(records)
    results: list[dict[str, Any]] = []
    try:
        for done, record in enumerate(records, 1):
            queries = record.queries
            frames = len(record.frames)
            features = None
            tracks: dict[int, list[_Track]] = {q: [] for q in range(len(queries))}
            for t in range(frames):
                still = replace(record, kind="image", frames=[record.frames[t]])
                batch = collate(
                    [image_datapoint(still, queries, resolution=resolution, targets=False)],
                    [q.query_id for q in queries],
                    [record.media_id],
                ).to(device)
                out = model.detector(batch.data).output[-1][-1]
                for q in range(len(queries)):
                    found = detections(out, q, 0, record.height, record.width, score_threshold)
                    for det in sorted(found, key=lambda d: -d["score"]):
                        if len(tracks[q]) >= max_objects:
                            break
                        followed = [track.frames[t] for track in tracks[q]]
                        if _covered(det["segmentation"], followed, new_object_iou):
                            continue
                        if features is None:
                            features = model.features(decode_frames(record, resolution).to(device))
                        mask = mask_utils.decode(det["segmentation"]).astype(bool)
                        masks = _track_from(model, features, record, t, mask, resolution)
                        tracks[q].append(_Track(det["score"], masks, encode_frames(masks)))
            for q, query in enumerate(queries):
                video_id, category_id = pair_ids(query)
                for track in tracks[q]:
                    results.append(
                        {
                            "video_id": video_id,
                            "category_id": category_id,
                            "score": track.score,
                            "segmentations": _encode(track.masks),
                        }
                    )
            if progress:
                progress("detect and track", done, len(records))
    finally:
        model.train(was_training)
    return results


@dataclass
class _Track:
    """An object followed by ``detect_and_track``: its detection's score, its masks (T, H, W) and the same as
    compressed RLEs per frame."""

    score: float
    masks: np.ndarray
    frames: list[dict[str, Any]]


def _covered(segmentation: dict[str, Any], followed: list[dict[str, Any]], new_object_iou: float) -> bool:
    """Whether a detection's mask overlaps the mask of an object already followed, on the same frame, by
    ``new_object_iou`` or more (an empty mask covers nothing)."""
    if not followed or area(segmentation) == 0:
        return False
    return bool((masklet_ious([[segmentation]], [[f] for f in followed])[0] >= new_object_iou).any())


def _track_from(
    model: Sam3VideoModel, features: Any, record: MediaRecord, start: int, mask: np.ndarray, resolution: int
) -> np.ndarray:
    small = resize_mask(mask, resolution)
    device = features.feats[-1].device
    prompt = Prompt(masks=torch.from_numpy(small)[None, None].float().to(device))
    masks = np.zeros((len(record.frames), record.height, record.width), bool)
    masks[start] = mask
    for frame in model.track(features, start, prompt)[1:]:
        masks[frame.frame] = _upsample(frame.masks, record.height, record.width)[0]
    return masks
