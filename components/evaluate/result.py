"""The metrics document that `evaluate` writes and every gate reads.

Scales follow the SAM 3 tables: ``cgF1`` and ``pmF1`` on 0-100, everything else
(IL_MCC included) on 0-1. Values without an IoU suffix are means over the ten
thresholds 0.50:0.05:0.95; ``@0.5`` / ``@0.75`` are single thresholds and
``per_threshold`` holds every one. ``positive_macro_F1`` is -1 when no pair has
both predictions and ground truth (undefined; the reference reports -1 too).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

_FROZEN = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class PerThreshold(BaseModel):
    """Every IoU-dependent metric at each threshold (same scales as the headline values)."""

    model_config = _FROZEN

    iou_thresholds: list[float]
    cgF1: list[float]
    pmF1: list[float]
    pm_precision: list[float]
    precision: list[float]
    recall: list[float]
    F1: list[float]
    positive_macro_F1: list[float]
    TP: list[int]
    FP: list[int]
    FN: list[int]
    pmFP: list[int] = Field(description="false positives in pairs with both predictions and ground truth")


class PairCounts(BaseModel):
    """How many (media, noun phrase) pairs were evaluated and how each came out at image level."""

    model_config = _FROZEN

    pairs: int = Field(description="pairs evaluated")
    excluded_not_exhaustive: int = Field(description="pairs skipped: not instance-exhaustive in some file")
    IL_TP: int
    IL_FP: int
    IL_TN: int
    IL_FN: int
    predictions: int = Field(description="predictions in the file")
    kept_predictions: int = Field(description="predictions with score >= threshold in evaluated pairs")
    ground_truths: int = Field(description="non-crowd ground truths in evaluated pairs (chosen file)")
    crowd_ignored: int = Field(description="crowd ground truths in evaluated pairs, ignored (first file)")


class EvaluationResult(BaseModel):
    """SAM 3 concept-segmentation metrics for one prediction file."""

    model_config = _FROZEN

    cgF1: float = Field(description="100 x pmF1 x IL_MCC, mean over IoU thresholds")
    cgF1_50: float = Field(alias="cgF1@0.5")
    cgF1_75: float = Field(alias="cgF1@0.75")
    pmF1: float = Field(description="positive micro F1 (0-100), mean over IoU thresholds")
    pmF1_50: float = Field(alias="pmF1@0.5")
    pmF1_75: float = Field(alias="pmF1@0.75")
    IL_MCC: float = Field(description="image-level Matthews correlation coefficient")
    IL_precision: float
    IL_recall: float
    IL_F1: float
    IL_FPR: float
    precision: float
    recall: float
    F1: float
    pm_precision: float = Field(description="positive micro precision: false positives of IL_TP pairs only")
    positive_macro_F1: float
    per_threshold: PerThreshold
    counts: PairCounts
    unit: Literal["image", "video"]
    iou_type: Literal["segm", "bbox"]
    score_threshold: float
    gt_files: int
    warnings: list[str] = Field(default_factory=list)

    def to_json_dict(self) -> dict[str, object]:
        """The document as written to METRICS.json (``@`` keys included)."""
        return self.model_dump(mode="json", by_alias=True)


class _OmitsUnmeasured(BaseModel):
    """Scores whose optional fields are left out of the JSON, not null, when not measured (documents written
    before a score existed keep their form)."""

    model_config = _FROZEN

    @model_serializer(mode="wrap")
    def _omit_none(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None}


class TrackingScores(_OmitsUnmeasured):
    """The tracker alone, every ground-truth object prompted with its true first-visible mask
    (components.evaluate.tracking.prompted_masklets)."""

    tracking_cgF1: float
    masklet_IoU: float = Field(description="mean masklet IoU of the tracked objects")
    cross_object_IoU: float | None = Field(
        default=None, description="IoU of the masks given to two objects on a frame (1: the same mask)"
    )


class VideoHeadline(_OmitsUnmeasured):
    """The gated video numbers: end to end (detector + tracker), then the tracker alone."""

    video_cgF1: float
    video_IL_MCC: float
    video_pmF1: float
    tracking_cgF1: float
    masklet_IoU: float
    cross_object_IoU: float | None = None

    def metrics(self) -> dict[str, float]:
        """As gates, model cards and summaries carry them (``video_cgF1``, ...)."""
        return {k: float(v) for k, v in self.model_dump().items()}


class VideoEvaluation(BaseModel):
    """A video stage's evaluation on the gold videos: the ``video`` section of its metrics.json."""

    model_config = _FROZEN

    result: EvaluationResult = Field(description="end to end: detect on every frame, track new objects")
    headline: VideoHeadline
    references: dict[str, TrackingScores] = Field(
        description='trackers to compare with, prompted the same way ("copy last mask")'
    )
    videos: int
    tracked_objects: int

    def to_json_dict(self) -> dict[str, Any]:
        """The section as written to metrics.json."""
        return {"result": self.result.to_json_dict(), **self.model_dump(mode="json", exclude={"result"})}


HEADLINE = ("cgF1", "IL_MCC", "pmF1", "cgF1@0.5", "cgF1@0.75")
"""The metrics that gates, model cards and summaries carry (the keys of METRICS.json)."""


def headline(doc: dict[str, Any]) -> dict[str, float]:
    """The headline metrics of a METRICS.json document."""
    return {k: float(doc[k]) for k in HEADLINE}


RECOGNITION_HEADLINE = ("recognition_AUC",)
"""What gates, model cards and summaries carry of the pretrain stage, which makes no detections: the AUC of
its presence logits over the gold pairs (components.evaluate.recognition)."""


def recognition_headline(recognition: dict[str, Any]) -> dict[str, float]:
    """The headline of a pretrain stage's ``recognition`` section of METRICS.json."""
    return {k: float(recognition[k]) for k in RECOGNITION_HEADLINE}
