"""What the pipeline's data steps read: sources (or the synthetic generator), negatives, partitions."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from components.schemas import SourceTag


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SyntheticData(_Model):
    """Generate the built-in synthetic SA-Co data (into the object store) instead of reading sources."""

    images: int = Field(default=400, ge=1)
    gold_images: int = Field(default=100, ge=1)
    videos: int = Field(default=16, ge=0)
    gold_videos: int = Field(default=8, ge=0)
    frames: int = Field(default=12, ge=2)
    size: int = Field(default=224, ge=32)
    seed: int = 0
    syn_images: int = Field(
        default=0,
        ge=0,
        description="training images of the SYN source: the same domain, a weaker annotator's labels "
        "(components.synthetic.sources). With SYN or EXT images beside them the clean training images are "
        "the HQ source (tag hq) and the gold set too; without, they keep the tag syn they always had",
    )
    ext_images: int = Field(
        default=0,
        ge=0,
        description="training images of the EXT source: another domain, COCO-style categories (colour and "
        "shape), no hard negatives of its own (components.synthetic.sources)",
    )

    def sources(self) -> bool:
        """Whether the SYN or EXT source is asked for (then the clean images are HQ)."""
        return bool(self.syn_images or self.ext_images)

    def identity(self) -> dict[str, object]:
        """What names the generated data: every field, the SYN and EXT counts only when asked for (so the
        data and run ids of configs without them stay as they were)."""
        return self.model_dump(mode="json", exclude=set() if self.sources() else {"syn_images", "ext_images"})


class Source(_Model):
    tag: SourceTag
    path: str = Field(description="a folder (laptop) or an s3:// prefix holding the annotation JSON + media")


class DataConfig(_Model):
    dataset: str = Field(default="shapes", pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")
    synthetic: SyntheticData | None = None
    train: list[Source] = Field(default_factory=list, description="training sources (besides synthetic)")
    gold: list[Source] = Field(default_factory=list, description="SA-Co image gold sources for evaluation")
    ontology: str | None = Field(default=None, description="concept ontology for hard negatives")
    negatives_per_image: int = Field(default=30, ge=0, le=30)
    partitions: int = Field(default=2, ge=1, le=256, description="parallel ingest workers")
    image_check: Literal["structure", "decode"] = "structure"

    def identity(self) -> dict[str, Any]:
        """This config in the run id (the synthetic data's SYN and EXT counts only when asked for)."""
        doc = self.model_dump(mode="json")
        if self.synthetic is not None:
            doc["synthetic"] = self.synthetic.identity()
        return doc

    def has_videos(self) -> bool:
        """Whether training and gold data both hold videos."""
        if self.synthetic is not None and self.synthetic.videos and self.synthetic.gold_videos:
            return True
        return any(s.tag == "video" for s in self.train) and any(s.tag == "video" for s in self.gold)

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        if self.synthetic is None and not self.train:
            raise ValueError("give data.train sources or data.synthetic")
        if self.synthetic is None and not self.gold:
            raise ValueError("give data.gold sources (the evaluation set) or data.synthetic")
        if self.negatives_per_image and self.synthetic is None and self.ontology is None:
            raise ValueError("data.negatives_per_image > 0 needs data.ontology")
        return self
