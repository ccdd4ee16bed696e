"""The model's training settings: the weights of its losses and how its tracker's clips are sampled.

The model owns them (``components.model.loss``, ``components.model.clips`` read them); a stage's
``TrainConfig`` (``components.train.config``) carries one of each.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

PromptKind = Literal["mask", "box", "point"]


class LossWeights(BaseModel):
    """Defaults as released with SAM 3."""

    model_config = ConfigDict(extra="forbid")

    box_l1: float = 5.0
    giou: float = 2.0
    classification: float = 20.0
    presence: float = 20.0
    mask_focal: float = 200.0
    mask_dice: float = 10.0
    semantic_seg: float = Field(
        default=0.0,
        ge=0,
        description="the official semantic-segmentation criterion (the mask head's per-pixel map of every "
        "instance of the phrase, empty for an absent phrase): its BCE weight; 0 leaves it out",
    )
    semantic_dice: float = Field(default=0.0, ge=0, description="the same criterion's dice weight")


class TrackerLossWeights(BaseModel):
    """SAM 2's weights: mask focal 20, dice 1, IoU prediction 1, object score 1."""

    model_config = ConfigDict(extra="forbid")

    mask_focal: float = 20.0
    mask_dice: float = 1.0
    iou: float = 1.0
    object_score: float = 1.0


class AlignLossWeights(BaseModel):
    """Stage 0 (components.model.align.alignment_loss): the per-pair, per-location and per-instance terms."""

    model_config = ConfigDict(extra="forbid")

    pair: float = Field(default=1.0, ge=0)
    local: float = Field(
        default=1.0,
        ge=0,
        description="per location, for the pairs whose instances the data lists exhaustively (0: off)",
    )
    # off unless a config sets it: on the embedded default it raises recognition (stage 0's and the
    # detector's) and costs the detector's boxes some IoU, more the heavier it weighs; local.yaml sets 0.3
    # (docs/results.md)
    instance: float = Field(
        default=0.0,
        ge=0,
        description="per instance whose attributes the data tells, its cells pooled (0: off)",
    )


def _default_prompts() -> dict[PromptKind, float]:
    return {"mask": 0.5, "box": 0.25, "point": 0.25}


class ClipSampling(BaseModel):
    """How training clips are cut from videos and prompted."""

    model_config = ConfigDict(extra="forbid")

    frames: int = Field(default=8, ge=2, description="consecutive frames per clip")
    batch_size: int | None = Field(
        default=None,
        ge=1,
        description="clips per rank in a clip batch (default: the stage's batch_size); lets the joint "
        "stage train clips in batches as large as the tracker stage's beside smaller image batches",
    )
    max_objects: int = Field(default=3, ge=1, description="objects tracked per clip")
    prompts: dict[PromptKind, float] = Field(
        default_factory=_default_prompts,
        description="chance of each first-frame prompt",
    )

    @model_validator(mode="after")
    def _check(self) -> ClipSampling:
        if not any(w > 0 for w in self.prompts.values()) or any(w < 0 for w in self.prompts.values()):
            raise ValueError("prompts: weights must be >= 0 and at least one positive")
        return self
