"""What the tracker reads and returns: first-frame prompts, clips of videos, per-frame outputs.

Shared by the video model (``components.model.video``), the clip sampler and tracker loss
(``components.model.clips``) and the tracking evaluation (``components.evaluate.tracking``), so that none
of them imports another for its types.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from components.model.batch import TensorBatch


@dataclass
class Prompt:
    """How a group of objects is prompted on their first frame: binary masks, or clicks.

    ``masks``: (B, 1, R, R) float; ``points``: (B, P, 2) pixel (x, y) at the model
    resolution and ``labels``: (B, P) int32 (1 positive click, 2/3 box corners).
    """

    masks: torch.Tensor | None = None
    points: torch.Tensor | None = None
    labels: torch.Tensor | None = None

    def point_inputs(self) -> dict[str, torch.Tensor] | None:
        if self.points is None:
            return None
        return {"point_coords": self.points, "point_labels": self.labels}  # type: ignore[dict-item]

    def to(self, device: torch.device) -> Prompt:
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)

        return Prompt(move(self.masks), move(self.points), move(self.labels))


class FrameOutput(NamedTuple):
    """One frame of a tracked group (B objects): what the loss and the predictions read.

    A named tuple, so that DDP finds the tensors in the model's output (it walks tuples, not dataclasses).
    """

    frame: int
    masks: torch.Tensor  # (B, 1, R, R) logits of the chosen mask
    multimasks: torch.Tensor  # (B, M, R, R) logits of every candidate
    ious: torch.Tensor  # (B, M) predicted IoU of each candidate
    object_logits: torch.Tensor  # (B, 1) is the object visible in this frame
    from_prompt: bool  # the output is the mask prompt itself (nothing predicted)


@dataclass
class Group:
    """Objects (rows of the clip's targets) prompted alike on frame ``start``."""

    start: int
    objects: list[int]
    prompt: Prompt


@dataclass
class Clip:
    media_id: str
    frames: torch.Tensor  # (T, 3, R, R) normalised
    targets: torch.Tensor  # (K, T, R, R) bool
    groups: list[Group]


@dataclass
class ClipBatch(TensorBatch):
    clips: list[Clip]
