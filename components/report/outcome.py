"""Collect a pipeline execution's outcome from the records its steps left in the store.

Every step writes its own record (``runs/<run_id>/<stage>/result.json`` for
training, ``.../eval/metrics.json``, and per execution the gate decisions and
the promotion); the exit handler gathers them into ``outcome.json`` whatever
happened, so the CLI and the Kubeflow UI tell the same story.
"""

from __future__ import annotations

import time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from components.evaluate.result import TrackingScores, VideoHeadline
from components.gate.policy import GateDecision, stage_metrics
from components.promote.base import ResolvedBase, read_base
from components.promote.promote import Promotion
from components.schemas import evaluation_metrics_key, execution_prefix, stage_result_key
from components.storage import ObjectStore
from components.train.job import StageResult

Verdict = Literal["promoted", "stopped", "failed"]


class StageSummary(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stage: str
    steps: int | None = None
    seconds: float | None = None
    checkpoint: str | None = None
    metrics: dict[str, float] = {}
    diagnostics: dict[str, float] = {}
    references: dict[str, dict[str, float]] = {}
    video_references: dict[str, TrackingScores] = {}  # video stages: trackers to compare with
    recognition_by_length: dict[str, float] = {}  # the pretrain stage: words in the phrase -> AUC
    gate: Literal["passed", "failed", "not run"] = "not run"
    reasons: list[str] = []

    @property
    def video(self) -> VideoHeadline | None:
        """A video stage's headline on the gold videos (from ``metrics``), None for other stages."""
        if "video_cgF1" not in self.metrics:
            return None
        return VideoHeadline.model_validate(
            {k: self.metrics[k] for k in VideoHeadline.model_fields if k in self.metrics}
        )


class Outcome(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run_id: str
    execution: str
    verdict: Verdict
    state: str  # the pipeline's own final state (SUCCEEDED, FAILED, ...)
    error: str = ""
    stages: list[StageSummary]
    base: ResolvedBase | None = None  # the model the run started from, with its gold scores
    stopped_by: str | None = None  # the stage whose gate failed
    promotion: Promotion | None = None
    finished_at: float = Field(default_factory=time.time)

    def brief(self) -> str:
        """One line for logs: each stage's headline metrics and gate, then the promotion or the error."""
        keys = (
            "recognition_AUC",
            "cgF1",
            "IL_MCC",
            "pmF1",
            "video_cgF1",
            "tracking_cgF1",
            "masklet_IoU",
            "cross_object_IoU",
        )
        parts = []
        if self.base is not None:
            scores = " ".join(f"{k} {self.base.metrics[k]:.3g}" for k in keys if k in self.base.metrics)
            parts.append(f"base {self.base.reference} {scores or 'not evaluated'}")
        for s in self.stages:
            scores = " ".join(f"{k} {s.metrics[k]:.3g}" for k in keys if k in s.metrics)
            parts.append(f"{s.stage} {scores or 'not evaluated'}, gate {s.gate}")
        if self.promotion is not None:
            p = self.promotion
            parts.append(f"{p.model} version {p.version} -> {p.alias}")
        elif self.error:
            parts.append(self.error)
        return "; ".join(parts)

    @property
    def exit_code(self) -> int:
        return {"promoted": 0, "stopped": 3, "failed": 1}[self.verdict]


def gate_key(run_id: str, execution: str, stage: str) -> str:
    return f"{execution_prefix(run_id, execution)}/{stage}.gate.json"


def outcome_key(run_id: str, execution: str) -> str:
    return f"{execution_prefix(run_id, execution)}/outcome.json"


def collect(
    store: ObjectStore, run_id: str, execution: str, stages: list[str], state: str, error: str = ""
) -> Outcome:
    summaries = [_stage(store, run_id, execution, stage) for stage in stages]
    stopped = next((s.stage for s in summaries if s.gate == "failed"), None)
    promotion_key = f"{execution_prefix(run_id, execution)}/promotion.json"
    promotion = (
        Promotion.model_validate(store.get_json(promotion_key)) if store.exists(promotion_key) else None
    )
    verdict: Verdict = "promoted" if promotion else "stopped" if stopped else "failed"
    if verdict == "failed" and not error:
        error = "the run ended before promotion without a failed gate; see the failed step's log"
    return Outcome(
        run_id=run_id,
        execution=execution,
        verdict=verdict,
        state=state,
        error=error,
        stages=summaries,
        base=read_base(store, run_id, execution),
        stopped_by=stopped,
        promotion=promotion,
    )


def _stage(store: ObjectStore, run_id: str, execution: str, stage: str) -> StageSummary:
    summary = StageSummary(stage=stage)
    trained = stage_result_key(run_id, stage)
    if store.exists(trained):
        result = StageResult.model_validate(store.get_json(trained))
        summary.steps, summary.seconds, summary.checkpoint = result.steps, result.seconds, result.checkpoint
    evaluated = evaluation_metrics_key(run_id, stage)
    if store.exists(evaluated):
        doc = store.get_json(evaluated)
        summary.metrics, summary.diagnostics = stage_metrics(doc), doc.get("diagnostics", {})
        summary.references = doc.get("references", {})
        summary.video_references = {
            name: TrackingScores.model_validate(scores)
            for name, scores in doc.get("video", {}).get("references", {}).items()
        }
        summary.recognition_by_length = doc.get("recognition", {}).get("by_length", {})
    gated = gate_key(run_id, execution, stage)
    if store.exists(gated):
        decision = GateDecision.model_validate(store.get_json(gated))
        summary.gate = "passed" if decision.passed else "failed"
        summary.reasons = decision.reasons
    return summary


def record(store: ObjectStore, outcome: Outcome) -> str:
    key = outcome_key(outcome.run_id, outcome.execution)
    store.put_json(key, outcome)
    return store.uri(key)
