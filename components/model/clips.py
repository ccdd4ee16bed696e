"""Video records -> tracker training clips, and the tracker's loss.

A clip is ``frames`` consecutive frames of one video with up to ``max_objects``
of its objects (an object is an ``object_id`` of the record's positive queries;
several noun phrases may name the same one). Each object is prompted on its
first visible frame in the clip with its mask, its box (two corner clicks) or
one positive click inside it, drawn by the configured probabilities, and
tracked from there to the clip's end. Objects that share a prompt frame and a
prompt kind are tracked together as one batch.

The loss per tracked frame is SAM 2's: focal and dice on the candidate mask
that fits best (the others get no mask gradient), L1 between every candidate's
predicted IoU and its actual IoU, and a binary cross-entropy on the
object-score logit (is the object visible in this frame; it is not while
occluded). Mask and IoU terms count only where the object is visible. The
official primitives compute them (``sam3.train.loss.loss_fns``); each term is
divided by the number of tracked (object, frame) pairs.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils

from components.errors import DataError
from components.model.batch import decode_frame, resize_mask
from components.model.compat import ensure_compat
from components.model.settings import ClipSampling, TrackerLossWeights
from components.model.tracker_io import Clip, ClipBatch, FrameOutput, Group, Prompt
from components.schemas import MediaRecord

TRACK_TERMS = ("track_focal", "track_dice", "track_iou", "track_object")


# -- records -> clips ------------------------------------------------------------------
def decode_frames(record: MediaRecord, resolution: int, frames: Sequence[int] | None = None) -> torch.Tensor:
    """Frames of a video record as normalised (T, 3, R, R) floats (all of them, or the given indices)."""
    out = []
    for t in range(len(record.frames)) if frames is None else frames:
        try:
            out.append(decode_frame(record.frames[t], resolution))
        except (OSError, IndexError) as exc:
            raise DataError(f"{record.media_id}: cannot decode frame {t}: {exc}") from exc
    return torch.stack(out)


Masklet = tuple[str | None, ...]


def object_masks(record: MediaRecord) -> dict[Masklet, list[str | None]]:
    """The record's objects: each distinct masklet (per-frame RLE counts, None where hidden) of its
    positive queries, keyed by itself.

    The masklet is the identity: object ids only number the instances of one query (the SA-Co
    video format has no identity across noun phrases), and two phrases naming one object give
    the same masklet.
    """
    objects: dict[Masklet, list[str | None]] = {}
    for query in record.queries:
        if not query.positive:
            continue
        for instance in query.instances:
            if instance.crowd or not instance.masks:
                continue
            objects.setdefault(tuple(instance.masks), list(instance.masks))
    return objects


def full_mask(record: MediaRecord, counts: str | None) -> np.ndarray:
    """One frame's mask of an object at the record's size, (H, W) bool (all False where hidden)."""
    if counts is None:
        return np.zeros((record.height, record.width), bool)
    return mask_utils.decode({"size": [record.height, record.width], "counts": counts.encode()}).astype(bool)


def mask_at(record: MediaRecord, counts: str | None, resolution: int) -> np.ndarray:
    """One frame's mask of an object at the model resolution (all False where hidden)."""
    if counts is None:
        return np.zeros((resolution, resolution), bool)
    return resize_mask(full_mask(record, counts), resolution)


def sample_clip(record: MediaRecord, cfg: ClipSampling, resolution: int, rng: random.Random) -> Clip | None:
    """A training clip of the record, or None when no object is visible before its last frame."""
    length = len(record.frames)
    size = min(cfg.frames, length)
    start = rng.randrange(length - size + 1)
    window = range(start, start + size)
    candidates = []
    for per_frame in object_masks(record).values():
        masks = np.stack(
            [mask_at(record, per_frame[t] if t < len(per_frame) else None, resolution) for t in window]
        )
        seen = np.asarray(masks.reshape(size, -1).any(axis=1))
        if seen[:-1].any():  # something left to track after the prompt
            candidates.append((masks, int(np.argmax(seen))))
    if not candidates:
        return None
    chosen = rng.sample(candidates, min(cfg.max_objects, len(candidates)))
    kinds, weights = zip(*((k, w) for k, w in cfg.prompts.items() if w > 0), strict=True)
    by_key: dict[tuple[int, str], list[int]] = {}
    prompts: list[Any] = []  # a mask, or (points, labels)
    for row, (masks, first) in enumerate(chosen):
        kind = rng.choices(kinds, weights)[0]
        by_key.setdefault((first, kind), []).append(row)
        prompts.append(_prompt_of(masks[first], kind, rng))
    groups = []
    for (first, kind), rows in sorted(by_key.items()):
        if kind == "mask":
            prompt = Prompt(masks=torch.from_numpy(np.stack([prompts[r] for r in rows]))[:, None].float())
        else:
            points = np.stack([prompts[r][0] for r in rows])
            labels = np.stack([prompts[r][1] for r in rows])
            prompt = Prompt(points=torch.from_numpy(points).float(), labels=torch.from_numpy(labels).int())
        groups.append(Group(start=first, objects=rows, prompt=prompt))
    return Clip(
        media_id=record.media_id,
        frames=decode_frames(record, resolution, list(window)),
        targets=torch.from_numpy(np.stack([m for m, _ in chosen])),
        groups=groups,
    )


def _prompt_of(mask: np.ndarray, kind: str, rng: random.Random) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """The mask itself, its box as two corner clicks (labels 2, 3), or one click inside it (label 1)."""
    if kind == "mask":
        return mask
    ys, xs = np.nonzero(mask)
    if kind == "box":
        corners = np.array([[xs.min(), ys.min()], [xs.max() + 1, ys.max() + 1]], dtype=np.float32)
        return corners, np.array([2, 3], dtype=np.int32)
    i = rng.randrange(len(xs))
    return np.array([[xs[i] + 0.5, ys[i] + 0.5]], dtype=np.float32), np.array([1], dtype=np.int32)


def records_to_clips(
    records: Sequence[MediaRecord], cfg: ClipSampling, resolution: int, rng: random.Random
) -> ClipBatch:
    """A clip from each video record (records with nothing to track are skipped)."""
    clips = [c for r in records if r.kind == "video" and (c := sample_clip(r, cfg, resolution, rng))]
    if not clips:
        raise DataError("no trackable object in this batch of videos")
    return ClipBatch(clips)


# -- the loss --------------------------------------------------------------------------------
class TrackerCriterion(torch.nn.Module):
    """SAM 2's tracking loss over every tracked frame of a batch (see the module docstring)."""

    def __init__(self, weights: TrackerLossWeights) -> None:
        super().__init__()
        self.weights = weights

    def forward(
        self, outputs: list[list[list[FrameOutput]]], batch: ClipBatch
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        ensure_compat()
        sums: dict[str, Any] = dict.fromkeys(TRACK_TERMS, 0.0)
        count = 0
        for clip, groups in zip(batch.clips, outputs, strict=True):
            for group, frames in zip(clip.groups, groups, strict=True):
                for out in frames:
                    if out.from_prompt:
                        continue
                    target = clip.targets[group.objects, out.frame][:, None].float()
                    for key, value in self._frame(out, target).items():
                        sums[key] = sums[key] + value
                    count += len(group.objects)
        if count == 0:
            raise DataError("no tracked frame to learn from in this batch (every clip ends at its prompt)")
        terms = {k: torch.as_tensor(v) / count for k, v in sums.items()}
        w = self.weights
        total = (
            terms["track_focal"] * w.mask_focal
            + terms["track_dice"] * w.mask_dice
            + terms["track_iou"] * w.iou
            + terms["track_object"] * w.object_score
        )
        return total, terms

    def _frame(self, out: FrameOutput, target: torch.Tensor) -> dict[str, torch.Tensor]:
        from sam3.train.loss.loss_fns import dice_loss, iou_loss, sigmoid_focal_loss

        masks = out.multimasks
        target = target.expand_as(masks)
        focal = sigmoid_focal_loss(
            masks, target, 1, alpha=0.25, gamma=2, loss_on_multimask=True, triton=False
        )
        dice = dice_loss(masks, target, 1, loss_on_multimask=True)
        iou = iou_loss(masks, target, out.ious, 1, loss_on_multimask=True, use_l1_loss=True)
        visible = target[:, 0].flatten(1).any(dim=1).float()
        best = (focal * self.weights.mask_focal + dice * self.weights.mask_dice).argmin(dim=1)
        rows = torch.arange(masks.shape[0], device=masks.device)
        objectness = torch.nn.functional.binary_cross_entropy_with_logits(
            out.object_logits[:, 0].float(), visible, reduction="sum"
        )
        return {
            "track_focal": (focal[rows, best] * visible).sum(),
            "track_dice": (dice[rows, best] * visible).sum(),
            "track_iou": (iou.mean(dim=1) * visible).sum(),
            "track_object": objectness,
        }
