"""The gate policy: does a stage's evaluation allow the pipeline to go on?

Pure functions over numbers, so both outcomes of every rule are easy to test;
the component around it reads the metrics and the production model card and
records the decision.

The pretrain stage (stage 0, vision-text alignment) makes no detections: its
evaluation is a recognition AUC alone. Which rules apply is decided by the
stage, not by the metrics an evaluation happens to hold, so a detector
evaluation that lost its cgF1 still fails. On the pretrain stage the detection
rules (the cgF1 / IL_MCC / pmF1 floors, the video floors and ceiling, the
regressions) are left out at their open defaults, a gate that sets one fails
(the stage cannot meet it; the pipeline config refuses such a gate first), and
``recognition_AUC`` must be there, above its floor when one is set. On the
other stages everything applies as before.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from components.errors import DataError
from components.evaluate.result import headline, recognition_headline
from components.storage import ObjectStore
from components.telemetry import push_gate_decision
from components.train.config import ALIGN_STAGE

log = logging.getLogger(__name__)


class Gate(BaseModel):
    """Thresholds a stage must meet (cgF1 and pmF1 on 0-100, IL_MCC on -1..1, recognition_AUC on 0..1, as
    the evaluator reports)."""

    model_config = ConfigDict(extra="forbid")

    cgF1: float = Field(default=0.0, ge=0, le=100)
    IL_MCC: float = Field(default=-1.0, ge=-1, le=1)
    pmF1: float = Field(default=0.0, ge=0, le=100)
    max_regression: float | None = Field(
        default=None,
        ge=0,
        description="cgF1 points this stage may lose against the same stage of the production model",
    )
    video_cgF1: float | None = Field(
        default=None, ge=0, le=100, description="video stages: end-to-end video cgF1 (detector + tracker)"
    )
    tracking_cgF1: float | None = Field(
        default=None,
        ge=0,
        le=100,
        description="video stages: video cgF1 of the tracker prompted with true masks",
    )
    masklet_IoU: float | None = Field(
        default=None, ge=0, le=1, description="video stages: mean masklet IoU of the prompted tracker"
    )
    max_cross_object_IoU: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="video stages: the most alike the prompted tracker's masks of two different objects may "
        "be (1: one mask for every object, a tracker that does not follow its prompt)",
    )
    max_base_regression: float | None = Field(
        default=None,
        ge=0,
        description="cgF1 points this stage may lose against the run's base (the config's `base`), scored "
        "on the same gold set by the same evaluate step: a fine-tune worse than the model it started from "
        "fails",
    )
    baseline_stage: str | None = Field(
        default=None, description="an earlier stage of the same run whose image cgF1 this stage must keep"
    )
    max_stage_regression: float = Field(
        default=1.0, ge=0, description="image cgF1 points this stage may lose against baseline_stage"
    )
    recognition_AUC: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="the pretrain stage: recognition AUC on the gold pairs (0.5 = chance), the only rule "
        "that applies to it; the other stages are not scored for it",
    )

    def detection_rules(self) -> list[str]:
        """The rules on detections this gate asks for: floors above their open defaults, and the optional
        rules it sets (a stage without detections cannot meet any of them)."""
        return [n for n in DETECTION_RULES if getattr(self, n) != Gate.model_fields[n].default]


class GateDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stage: str
    passed: bool
    reasons: list[str]
    metrics: dict[str, float]
    production_version: int | None = None


THRESHOLDED = ("cgF1", "IL_MCC", "pmF1")
VIDEO_THRESHOLDED = ("video_cgF1", "tracking_cgF1", "masklet_IoU")
DETECTION_RULES = (
    *THRESHOLDED,
    *VIDEO_THRESHOLDED,
    "max_cross_object_IoU",
    "max_regression",
    "max_base_regression",
    "baseline_stage",
)
"""Every rule on detections (max_stage_regression only qualifies baseline_stage)."""


def decide(
    stage: str,
    gate: Gate,
    metrics: dict[str, float],
    production: dict[str, float] | None = None,
    production_version: int | None = None,
    baseline: dict[str, float] | None = None,
    base: dict[str, float] | None = None,
) -> GateDecision:
    """Check every rule (not just the first failing one) and say why, in both outcomes.

    ``baseline``: the metrics of ``gate.baseline_stage`` of the same run (when the gate names one);
    ``base``: the gold metrics of the model the run started from (when the config has a base).
    The pretrain stage is checked by ``_decide_alignment`` (module docstring).
    """
    if stage == ALIGN_STAGE:
        return _decide_alignment(stage, gate, metrics, production_version)
    # (metric, bound, whether the bound is a ceiling): the floors, then the video ceiling
    bounds = [
        *((n, getattr(gate, n), False) for n in THRESHOLDED),
        *((n, getattr(gate, n), False) for n in VIDEO_THRESHOLDED if getattr(gate, n) is not None),
    ]
    if gate.recognition_AUC is not None:  # the pipeline config refuses it here; unscored, it fails as missing
        bounds.append(("recognition_AUC", gate.recognition_AUC, False))
    if gate.max_cross_object_IoU is not None:
        bounds.append(("cross_object_IoU", gate.max_cross_object_IoU, True))
    passed, reasons = _bounded(bounds, metrics)
    if gate.max_regression is not None:
        if production is None or "cgF1" not in production:
            reasons.append("no production model to compare with")  # a first model passes
        else:
            ok, reason = _kept(metrics, production, gate.max_regression, f"production v{production_version}")
            passed &= ok
            reasons.append(reason)
    if gate.max_base_regression is not None:
        if base is None or "cgF1" not in base:
            passed = False  # the config refuses the rule without a base; here it cannot pass unchecked
            reasons.append("no evaluation of the base to compare with")
        else:
            ok, reason = _kept(metrics, base, gate.max_base_regression, "base")
            passed &= ok
            reasons.append(reason)
    if gate.baseline_stage is not None:
        if baseline is None or "cgF1" not in baseline:
            passed = False
            reasons.append(f"no evaluation of the {gate.baseline_stage} stage to compare with")
        else:
            ok, reason = _kept(metrics, baseline, gate.max_stage_regression, f"{gate.baseline_stage} stage")
            passed &= ok
            reasons.append(reason)
    return GateDecision(
        stage=stage,
        passed=passed,
        reasons=reasons,
        metrics={k: float(v) for k, v in metrics.items()},
        production_version=production_version,
    )


def _decide_alignment(
    stage: str, gate: Gate, metrics: dict[str, float], production_version: int | None
) -> GateDecision:
    """The pretrain stage: recognition AUC must be there (and meet its floor when set); a detection rule
    set on this stage fails it, since its evaluation has no detections to meet it."""
    passed, reasons = _bounded([("recognition_AUC", gate.recognition_AUC or 0.0, False)], metrics)
    asked = gate.detection_rules()
    if asked:
        passed = False
        reasons.append(f"{', '.join(asked)} set, but the {stage} stage makes no detections")
    else:
        reasons.append(
            f"cgF1, IL_MCC, pmF1 and regressions not checked: the {stage} stage makes no detections"
        )
    return GateDecision(
        stage=stage,
        passed=passed,
        reasons=reasons,
        metrics={k: float(v) for k, v in metrics.items()},
        production_version=production_version,
    )


def _bounded(bounds: list[tuple[str, float, bool]], metrics: dict[str, float]) -> tuple[bool, list[str]]:
    """Each (metric, bound, whether the bound is a ceiling) checked; a missing metric fails."""
    passed, reasons = True, []
    for name, bound, ceiling in bounds:
        value = metrics.get(name)
        if value is None:
            passed = False
            reasons.append(f"{name} missing from the evaluation")
            continue
        ok = value <= bound if ceiling else value >= bound
        passed &= ok
        relation = ("<=" if ok else ">") if ceiling else (">=" if ok else "<")
        reasons.append(f"{name} {value:.4g} {relation} {bound:.4g}")
    return passed, reasons


def _kept(metrics: dict[str, float], earlier: dict[str, float], delta: float, what: str) -> tuple[bool, str]:
    """Whether cgF1 lost at most ``delta`` points against ``earlier``'s, and the reason to record."""
    value = metrics.get("cgF1", float("-inf"))
    ok = value >= earlier["cgF1"] - delta
    return ok, f"cgF1 {value:.4g} {'>=' if ok else '<'} {what} {earlier['cgF1']:.4g} - {delta:.4g}"


def stage_metrics(doc: dict[str, Any]) -> dict[str, float]:
    """The gated numbers of a stage's metrics.json: the image headline, plus the video one of video stages;
    of the pretrain stage (a ``recognition`` section, no ``result``), the recognition headline."""
    if "result" not in doc:
        if "recognition" in doc:
            return recognition_headline(doc["recognition"])
        raise DataError(f"a stage's metrics.json holds neither result nor recognition (keys: {sorted(doc)})")
    return headline(doc["result"]) | {
        k: float(v) for k, v in doc.get("video", {}).get("headline", {}).items()
    }


def gate_stage(
    store: ObjectStore,
    *,
    stage: str,
    gate: Gate,
    metrics_uri: str,
    model: str,
    run_id: str,
    record_key: str,
    base_metrics_uri: str | None = None,
) -> GateDecision:
    """Decide on a stage's evaluation against its thresholds, the production model and the run's base (its
    evaluation's metrics.json, when the run has one); record it."""
    from components.promote.registry import Registry
    from components.schemas import evaluation_metrics_key

    metrics = stage_metrics(store.get_json(store.key_of(metrics_uri)))
    registry = Registry(store, model)
    production = registry.alias("production")
    previous, version = None, None
    if production is not None:
        card = registry.card(production.version)
        previous, version = card.metrics.get(stage), production.version
    earlier = None
    if gate.baseline_stage is not None and store.exists(
        key := evaluation_metrics_key(run_id, gate.baseline_stage)
    ):
        earlier = stage_metrics(store.get_json(key))
    base = stage_metrics(store.get_json(store.key_of(base_metrics_uri))) if base_metrics_uri else None
    decision = decide(stage, gate, metrics, previous, version, earlier, base)
    store.put_json(record_key, decision)
    log.info("%s gate %s: %s", stage, "passed" if decision.passed else "FAILED", "; ".join(decision.reasons))
    push_gate_decision(model, stage, run_id, decision.passed, decision.metrics)  # when a gateway is set
    return decision
