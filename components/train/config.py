"""Training configuration: one pydantic model shared by the torchrun target, the launcher and the pipeline."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from components.model.config import PresetName as Size
from components.model.settings import AlignLossWeights, ClipSampling, LossWeights, TrackerLossWeights
from components.schemas import stage_prefix

Part = Literal["vision", "text", "geometry", "encoder", "decoder"]
"""Parts of the detector a stage can freeze (``optim.frozen``; components.train.optim.PARTS names their
parameters): the vision trunk and neck, the text encoder, the geometry (box and point prompt) encoder,
the image-text fusion encoder, and the decoder with its heads."""
Stage = Literal["pretrain", "detector", "presence", "tracker", "joint"]
VIDEO_STAGES = ("tracker", "joint")
"""Stages that train the video model (detector + tracker); the others train the image model."""
ALIGN_STAGE = "pretrain"
"""Stage 0 trains the detector's backbone alone, for vision-text alignment (components.model.align)."""


class OptimConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lr: float = Field(default=1e-4, gt=0)
    vision_lr: float | None = Field(default=None, gt=0, description="backbone LR (default: lr)")
    text_lr: float | None = Field(default=None, gt=0, description="text encoder LR (default: lr)")
    detector_lr: float | None = Field(
        default=None,
        gt=0,
        description="tracker stage: the detector's LR (shared encoder included); unset = detector frozen",
    )
    frozen: tuple[Part, ...] = Field(
        default=(),
        description="parts that do not train in this stage, on top of what the stage itself leaves out (no "
        "gradient, no optimizer state, no backward through a frozen encoder): vision, text, geometry, "
        "encoder, decoder. The embedded detector keeps what stage 0 taught the backbone; a fine-tune "
        "trains a part of a large model",
    )
    weight_decay: float = Field(default=0.1, ge=0)
    warmup_steps: int = Field(default=20, ge=0)
    schedule: Literal["inverse_sqrt", "cosine"] = Field(
        default="inverse_sqrt",
        description="after warmup: lr x sqrt(warmup / step) (as released), or a cosine decay to 0 at the "
        "stage's last step (a short stage then ends on settled weights)",
    )
    grad_clip: float = Field(default=0.1, gt=0)
    grad_accumulation: int = Field(default=1, ge=1)


class TrainConfig(BaseModel):
    """Everything one stage's torchrun job needs (secrets stay in the environment)."""

    model_config = ConfigDict(extra="forbid")

    stage: Stage
    dataset: str = Field(description="s3://BUCKET/datasets/NAME/VERSION")
    run_id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    size: Size = "tiny"
    steps: int = Field(default=100, ge=1)
    batch_size: int = Field(default=4, ge=1, description="images (video stages: clips) per rank per step")
    init: str | None = Field(default=None, description="checkpoint URI or local path to start from")
    eval_dataset: str | None = Field(
        default=None,
        description="pretrain: the gold dataset, scored for recognition AUC at every checkpoint (the "
        "curve in the stage's history and report)",
    )
    sources: dict[str, float] = Field(default_factory=lambda: {"hq": 1.0, "syn": 1.0, "ext": 1.0})
    exemplar_prob: float = Field(default=0.0, ge=0, le=1, description="chance a query gets a box exemplar")
    presence_head: bool = Field(
        default=True,
        description="off: train and score without the presence head, as SAM 3's ablation does: the official "
        "classification loss then supervises every query of every pair, negatives included (IABCEMdetr "
        "use_presence=False, no presence loss), and a detection's score is its query's probability alone "
        "(components.model.predict). The presence token stays built (the state dict is the same either way) "
        "and is read by nothing that scores",
    )
    max_queries_per_image: int = Field(default=8, ge=1)
    positive_fraction: float | None = Field(
        default=0.5, ge=0, le=1, description="share of sampled queries drawn from positives (None: uniform)"
    )
    loss: LossWeights = Field(default_factory=LossWeights)
    clips: ClipSampling = Field(default_factory=ClipSampling, description="video stages: clips and prompts")
    tracker_loss: TrackerLossWeights = Field(default_factory=TrackerLossWeights)
    align_loss: AlignLossWeights = Field(default_factory=AlignLossWeights)
    video_fraction: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="joint stage: share of steps trained on video clips (the rest images)",
    )
    optim: OptimConfig = Field(default_factory=OptimConfig)
    checkpoint_every: int = Field(default=50, ge=1)
    keep_checkpoints: int = Field(default=2, ge=1)
    metrics_port: int = Field(
        default=0, ge=0, le=65535, description="base port; rank r serves base+r; 0 = off"
    )
    data_workers: int = Field(default=1, ge=0)
    log_every: int = Field(default=10, ge=1)
    dist_timeout_s: int = Field(
        default=600,
        ge=10,
        description="process-group timeout: a rank that cannot connect or sync fails instead of hanging",
    )
    seed: int = 0
    precision: Literal["auto", "fp32", "bf16"] = "auto"

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if not self.dataset.startswith("s3://"):
            raise ValueError("dataset must be an s3:// dataset URI")
        if not any(w > 0 for w in self.sources.values()):
            raise ValueError("sources: at least one weight must be positive")
        if self.stage == "joint" and not 0 < self.video_fraction < 1:
            raise ValueError("video_fraction: the joint stage trains on both images and videos (0 < it < 1)")
        return self

    @property
    def video(self) -> bool:
        return self.stage in VIDEO_STAGES

    @property
    def align(self) -> bool:
        return self.stage == ALIGN_STAGE

    @property
    def prefix(self) -> str:
        return stage_prefix(self.run_id, self.stage)
