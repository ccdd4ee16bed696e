"""Model size: one pydantic config and three presets (``tiny``, ``small``, ``full``).

Every preset builds the same module classes with the same state-dict structure;
only sizes differ. ``full`` is the released SAM 3 image model (ViT 1024x32 at
1008 px, text encoder 1024x24, 6 encoder + 6 decoder layers, 200 queries), the
one that loads released checkpoints.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from components.errors import ConfigError

PresetName = Literal["tiny", "tiny112", "small", "full"]


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VisionConfig(_Config):
    """The ViT trunk (ViTDet-style: windowed blocks, a few global blocks, 2-D RoPE)."""

    width: int = Field(gt=0)
    depth: int = Field(gt=0)
    heads: int = Field(gt=0)
    mlp_ratio: float = Field(default=4.625, gt=0)
    patch_size: int = Field(default=14, gt=0)
    window_size: int = Field(gt=0, description="side of a window-attention block, in patches")
    global_blocks: tuple[int, ...] = Field(description="blocks with global attention; must include the last")
    pretrain_size: int = Field(gt=0, description="px; the absolute position table covers this (tiled beyond)")
    drop_path: float = Field(default=0.1, ge=0, lt=1)


class TextConfig(_Config):
    """The causal text transformer that encodes the noun phrase."""

    width: int = Field(gt=0)
    depth: int = Field(gt=0)
    heads: int = Field(gt=0)
    context_length: int = Field(default=32, gt=2)


class TrackerConfig(_Config):
    """The SAM 2-style tracker that shares the detector's vision encoder (memory encoder, memory attention,
    SAM prompt encoder and mask decoder with its IoU and object-score heads)."""

    memory_layers: int = Field(
        default=4, gt=0, description="memory-attention layers (self + cross to memories)"
    )
    memory_dim: int = Field(default=64, gt=0, description="channels of a spatial memory; divides d_model")
    memory_frames: int = Field(
        default=7, ge=2, description="the conditioning frame + the latest previous ones"
    )
    memory_feedforward: int = Field(default=2048, gt=0)
    decoder_mlp: int = Field(
        default=2048, gt=0, description="MLP width of the mask decoder's two-way transformer"
    )
    decoder_heads: int = Field(default=8, gt=0)
    iou_head: int = Field(default=256, gt=0, description="hidden width of the IoU-prediction head")
    max_object_pointers: int = Field(
        default=16, gt=0, description="object pointers of past frames attended to"
    )
    memory_locality: float = Field(
        default=6.0,
        ge=0,
        description="initial attention score of a memory at a pixel's own position over distant ones "
        "(components.model.video.local_memory_attention); 0: the default initialisation",
    )
    multimask_tracking: bool = Field(
        default=True,
        description="three candidate masks on tracked frames, chosen by the IoU head (as released); off: "
        "one mask, and no swap to a candidate at inference (a model trained briefly from scratch has no "
        "IoU head yet to choose with)",
    )


class ModelConfig(_Config):
    """Sizes of the SAM 3 model: detector with presence head, mask head, geometry (exemplar) encoder; and the
    video tracker (``tracker``, built only for the video stages)."""

    resolution: int = Field(gt=0, description="square input side in px")
    d_model: int = Field(gt=0, description="width of encoder, decoder, heads and prompts")
    heads: int = Field(default=8, gt=0)
    dim_feedforward: int = Field(gt=0)
    encoder_layers: int = Field(gt=0)
    decoder_layers: int = Field(gt=0)
    geometry_layers: int = Field(default=3, gt=0)
    num_queries: int = Field(
        gt=0, description="object queries (the one-to-many branch doubles them in training)"
    )
    query_grid: bool = Field(
        default=True,
        description="start the queries' reference boxes as a grid of cells tiling the image "
        "(components.model.decoder_init); off: random, as Meta's default initialisation",
    )
    decoder_locality: float = Field(
        default=8.0,
        ge=0,
        description="start each query's image cross-attention inside its reference box: the initial score "
        "penalty per unit of log-scaled offset outside it (components.model.decoder_init); 0: the default "
        "initialisation",
    )
    mask_levels: int | None = Field(
        default=None,
        ge=1,
        le=3,
        description="the neck's feature maps (coarsest first) that the mask head's pixel decoder reads: "
        "masks come out at the finest of them (components.model.builder.MaskHead); None: all three, as "
        "released (masks at 4x the patch grid)",
    )
    dropout: float = Field(default=0.1, ge=0, lt=1)
    activation_checkpointing: bool = Field(
        default=True,
        description="recompute activations in backward in the ViT, text encoder, geometry encoder, mask "
        "head, transformer encoder and decoder (off: those two run without it, components.model.compat)",
    )
    vision: VisionConfig
    text: TextConfig
    tracker: TrackerConfig = Field(default_factory=TrackerConfig)

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        v, t = self.vision, self.text
        problems = []
        if self.resolution % v.patch_size:
            problems.append(f"resolution {self.resolution} is not a multiple of patch_size {v.patch_size}")
        if self.resolution // v.patch_size < 2:
            problems.append("resolution must give at least 2x2 patches")
        if self.d_model % self.heads:
            problems.append(f"d_model {self.d_model} is not divisible by heads {self.heads}")
        if self.d_model % 8:
            problems.append(
                f"d_model {self.d_model} must be a multiple of 8 (GroupNorm in the pixel decoder)"
            )
        if v.width % v.heads or (v.width // v.heads) % 4:
            problems.append(f"vision width {v.width} / heads {v.heads} must give a head size divisible by 4")
        if v.width % 4:
            problems.append(f"vision width {v.width} must be a multiple of 4 (the neck upsamples to width/4)")
        if not v.global_blocks or any(not 0 <= b < v.depth for b in v.global_blocks):
            problems.append(f"vision global_blocks {list(v.global_blocks)} must lie in 0..{v.depth - 1}")
        elif max(v.global_blocks) != v.depth - 1:
            problems.append("vision global_blocks must include the last block (later blocks would be unused)")
        if v.pretrain_size % v.patch_size:
            problems.append(f"vision pretrain_size {v.pretrain_size} is not a multiple of patch_size")
        if self.d_model % self.tracker.memory_dim:
            problems.append(
                f"tracker memory_dim {self.tracker.memory_dim} must divide d_model {self.d_model}"
            )
        if self.d_model % self.tracker.decoder_heads:
            problems.append(f"d_model {self.d_model} is not divisible by tracker decoder_heads")
        if t.width % t.heads:
            problems.append(f"text width {t.width} is not divisible by text heads {t.heads}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def feature_size(self) -> int:
        """Side of the detector's feature map, in patches."""
        return self.resolution // self.vision.patch_size

    @classmethod
    def preset(cls, name: str) -> ModelConfig:
        """The named preset; ConfigError names the known ones."""
        if name not in PRESETS:
            raise ConfigError(f"unknown model size {name!r}: expected one of {sorted(PRESETS)}")
        return PRESETS[name]


PRESETS: dict[str, ModelConfig] = {
    # trains on 2 CPU cores (no dropout, no optional recompute); most parameters: the 49,408-token embedding.
    # CPU-size choices, by measurement (docs/results.md): 7-px patches (a synthetic object is then two to five
    # tokens wide, so shapes are learnable from scratch; 14-px patches left one-word phrases at chance), and
    # an 8-token text context (the longest synthetic phrase is 6 tokens; 32 made the text encoder most of the
    # step time); 36 queries, whose boxes start on a grid (with 20 the detector learnt boxes more slowly, with
    # 64 it was slower to score them)
    "tiny": ModelConfig(
        resolution=224,
        d_model=64,
        heads=4,
        dim_feedforward=256,
        encoder_layers=2,
        decoder_layers=2,
        geometry_layers=1,
        num_queries=36,  # a 6x6 grid of starting boxes (decoder_init): one query per 2.7x2.7 feature cells
        mask_levels=2,  # masks at 2x the patch grid (32x32 at 112 px): half a detector step (docs/results.md)
        dropout=0.0,
        activation_checkpointing=False,
        vision=VisionConfig(
            width=128,
            depth=2,
            heads=2,
            patch_size=7,
            window_size=8,
            global_blocks=(1,),
            pretrain_size=56,
            drop_path=0.0,
        ),
        text=TextConfig(width=128, depth=2, heads=2, context_length=8),
        tracker=TrackerConfig(
            memory_layers=1,
            memory_dim=16,
            memory_feedforward=256,
            decoder_mlp=256,
            decoder_heads=4,
            iou_head=64,
            multimask_tracking=False,
        ),
    ),
    # (tiny112 below: the same model at 112 px)
    # one GPU, short runs: the full model's widths for the detector, a ViT-S-sized trunk at 504 px
    "small": ModelConfig(
        resolution=504,
        d_model=256,
        heads=8,
        dim_feedforward=1024,
        encoder_layers=3,
        decoder_layers=3,
        geometry_layers=2,
        num_queries=100,
        vision=VisionConfig(
            width=384, depth=12, heads=6, window_size=12, global_blocks=(2, 5, 8, 11), pretrain_size=168
        ),
        text=TextConfig(width=512, depth=6, heads=8),
        tracker=TrackerConfig(memory_layers=2, memory_feedforward=1024, decoder_mlp=1024),
    ),
    # the released architecture (sam3.model_builder.build_sam3_image_model; the tracker of build_tracker)
    "full": ModelConfig(
        resolution=1008,
        d_model=256,
        heads=8,
        dim_feedforward=2048,
        encoder_layers=6,
        decoder_layers=6,
        geometry_layers=3,
        num_queries=200,
        vision=VisionConfig(
            width=1024, depth=32, heads=16, window_size=24, global_blocks=(7, 15, 23, 31), pretrain_size=336
        ),
        text=TextConfig(width=1024, depth=24, heads=16),
    ),
}

# ``tiny`` at 112 px (16x16 patches of 7 px): the same weights, about 4x cheaper CPU steps than at
# 224 px; every stage of the embedded default trains it.
PRESETS["tiny112"] = PRESETS["tiny"].model_copy(update={"resolution": 112})
