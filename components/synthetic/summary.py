"""The generator's parameters and the summary it writes as ``summary.json``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class SynthParams(BaseModel):
    """Validated arguments of :func:`components.synthetic.generate` (gold counts resolved)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    images: int = Field(ge=0)
    gold_images: int = Field(ge=0)
    videos: int = Field(ge=0)
    gold_videos: int = Field(ge=0)
    frames: int = Field(ge=3, description="frames per video; an occlusion needs one before and after")
    size: int = Field(ge=64, le=4096, description="image and frame width = height, pixels")
    seed: int = Field(ge=0)


class SplitSummary(BaseModel):
    """Counts for one split. Paths are relative to the output folder."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["image", "video"]
    annotations: str = Field(description="the split's annotations.json")
    images: str = Field(description="the folder that file names are relative to")
    media: int = Field(description="images or videos")
    pairs: int = Field(description="(media, noun phrase) queries")
    positive_pairs: int
    negative_pairs: int
    hard_negative_pairs: int = Field(description="negatives one attribute value away from a present object")
    instances: int = Field(description="annotated instance masks (images) or masklets (videos)")


class SynthSummary(BaseModel):
    """What :func:`components.synthetic.generate` wrote; also saved as ``DIR/summary.json``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = 1
    params: SynthParams
    ontology: str = "ontology.json"
    concepts: int
    splits: dict[str, SplitSummary]
