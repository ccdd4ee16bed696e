"""The gate policy, both outcomes of every rule; and the gate step against a real registry."""

from __future__ import annotations

import pytest

from components.errors import DataError
from components.gate.policy import Gate, decide, gate_stage, stage_metrics
from components.storage import ObjectStore

GOOD = {"cgF1": 55.0, "IL_MCC": 0.8, "pmF1": 68.75}


def test_every_threshold_passes_and_fails() -> None:
    assert decide("detector", Gate(cgF1=50, IL_MCC=0.7, pmF1=60), GOOD).passed
    for name, floor in (("cgF1", 56.0), ("IL_MCC", 0.81), ("pmF1", 70.0)):
        decision = decide("detector", Gate(**{name: floor}), GOOD)
        assert not decision.passed
        assert any(r.startswith(f"{name} ") and "<" in r for r in decision.reasons)


def test_missing_metric_fails() -> None:
    decision = decide("presence", Gate(), {"cgF1": 10.0, "pmF1": 20.0})
    assert not decision.passed and "IL_MCC missing from the evaluation" in decision.reasons


def test_regression_against_production() -> None:
    gate = Gate(max_regression=1.0)
    assert decide("presence", gate, GOOD, {"cgF1": 55.9}, 3).passed
    decision = decide("presence", gate, GOOD, {"cgF1": 56.5}, 3)
    assert not decision.passed and any("production v3" in r for r in decision.reasons)
    first = decide("presence", gate, GOOD, None, None)  # nothing to compare with yet
    assert first.passed and "no production model to compare with" in first.reasons


def test_gate_step_records_its_decision(store: ObjectStore) -> None:
    store.put_json(
        "runs/r/detector/eval/metrics.json", {"result": {**GOOD, "cgF1@0.5": 60.0, "cgF1@0.75": 50.0}}
    )
    decision = gate_stage(
        store,
        stage="detector",
        gate=Gate(cgF1=60),
        metrics_uri=store.uri("runs/r/detector/eval/metrics.json"),
        model="m",
        run_id="r",
        record_key="runs/r/executions/e/detector.gate.json",
    )
    assert not decision.passed and decision.production_version is None
    assert store.get_json("runs/r/executions/e/detector.gate.json")["passed"] is False


VIDEO = {**GOOD, "video_cgF1": 30.0, "tracking_cgF1": 70.0, "masklet_IoU": 0.65}


def test_video_thresholds_pass_fail_and_apply_only_when_set() -> None:
    assert decide("tracker", Gate(), GOOD).passed  # an image stage has no video metrics to gate
    assert decide("tracker", Gate(video_cgF1=25, tracking_cgF1=60, masklet_IoU=0.6), VIDEO).passed
    for name, floor in (("video_cgF1", 31.0), ("tracking_cgF1", 71.0), ("masklet_IoU", 0.7)):
        decision = decide("tracker", Gate(**{name: floor}), VIDEO)
        assert not decision.passed and any(r.startswith(f"{name} ") and "<" in r for r in decision.reasons)
    missing = decide("tracker", Gate(masklet_IoU=0.1), GOOD)
    assert not missing.passed and "masklet_IoU missing from the evaluation" in missing.reasons


def test_a_tracker_that_gives_every_object_the_same_mask_is_stopped() -> None:
    gate = Gate(max_cross_object_IoU=0.3)
    follows = decide("tracker", gate, {**VIDEO, "cross_object_IoU": 0.05})
    assert follows.passed and "cross_object_IoU 0.05 <= 0.3" in follows.reasons
    same_mask = decide("tracker", gate, {**VIDEO, "cross_object_IoU": 0.99})
    assert not same_mask.passed and "cross_object_IoU 0.99 > 0.3" in same_mask.reasons
    assert not decide("tracker", gate, VIDEO).passed  # not evaluated: not passed
    assert decide("tracker", Gate(), {**VIDEO, "cross_object_IoU": 0.99}).passed  # only when set


def test_regression_against_an_earlier_stage_of_the_run() -> None:
    gate = Gate(baseline_stage="presence", max_stage_regression=1.0)
    assert decide("joint", gate, VIDEO, baseline={"cgF1": 55.9}).passed
    decision = decide("joint", gate, VIDEO, baseline={"cgF1": 56.5})
    assert not decision.passed and "cgF1 55 < presence stage 56.5 - 1" in decision.reasons
    absent = decide("joint", gate, VIDEO)
    assert not absent.passed and "no evaluation of the presence stage to compare with" in absent.reasons


def test_gate_step_reads_video_metrics_and_the_baseline_stage(store: ObjectStore) -> None:
    image = {**GOOD, "cgF1@0.5": 60.0, "cgF1@0.75": 50.0}
    store.put_json("runs/v/presence/eval/metrics.json", {"result": {**image, "cgF1": 57.0}})
    video = {"headline": {k: VIDEO[k] for k in ("video_cgF1", "tracking_cgF1", "masklet_IoU")}}
    store.put_json("runs/v/joint/eval/metrics.json", {"result": image, "video": video})
    decision = gate_stage(
        store,
        stage="joint",
        gate=Gate(video_cgF1=20, baseline_stage="presence", max_stage_regression=1.0),
        metrics_uri=store.uri("runs/v/joint/eval/metrics.json"),
        model="m",
        run_id="v",
        record_key="runs/v/executions/e/joint.gate.json",
    )
    assert not decision.passed  # 55 < 57 - 1
    assert "video_cgF1 30 >= 20" in decision.reasons and decision.metrics["masklet_IoU"] == 0.65


# -- the pretrain stage: recognition AUC, no detections -------------------------------------------------
RECOGNITION = {
    "recognition_AUC": 0.93,
    "by_length": {"1": 0.88, "2": 0.95},
    "pairs": 40,
    "positive_pairs": 12,
}
PRETRAIN_DOC = {
    "checkpoint": "s3://b/runs/r/pretrain/checkpoints/step-1",
    "gold": "s3://b/g",
    "recognition": RECOGNITION,
}


def test_a_pretrain_metrics_doc_gives_its_recognition_headline() -> None:
    assert stage_metrics(PRETRAIN_DOC) == {"recognition_AUC": 0.93}
    image = {"result": {**GOOD, "cgF1@0.5": 60.0, "cgF1@0.75": 50.0}}
    assert stage_metrics(image) == {**GOOD, "cgF1@0.5": 60.0, "cgF1@0.75": 50.0}
    with pytest.raises(DataError, match="neither result nor recognition"):
        stage_metrics({"checkpoint": "s3://b/x", "gold": "s3://b/g"})


def test_the_pretrain_gate_checks_recognition_and_no_detection_rule() -> None:
    metrics = {"recognition_AUC": 0.93}
    passed = decide("pretrain", Gate(recognition_AUC=0.9), metrics)
    assert passed.passed and "recognition_AUC 0.93 >= 0.9" in passed.reasons
    assert any("makes no detections" in r for r in passed.reasons)  # cgF1 / IL_MCC / pmF1: not applied
    failed = decide("pretrain", Gate(recognition_AUC=0.95), metrics)
    assert not failed.passed and "recognition_AUC 0.93 < 0.95" in failed.reasons
    assert decide("pretrain", Gate(), metrics).passed  # no floor set: the AUC must still be there
    for gate in (Gate(), Gate(recognition_AUC=0.5)):
        missing = decide("pretrain", gate, {"cgF1": 50.0})
        assert not missing.passed and "recognition_AUC missing from the evaluation" in missing.reasons


def test_a_detection_rule_on_the_pretrain_stage_fails_loudly() -> None:
    for gate, named in (
        (Gate(recognition_AUC=0.5, cgF1=40.0), "cgF1"),
        (Gate(IL_MCC=0.5), "IL_MCC"),
        (Gate(max_regression=1.0), "max_regression"),
        (Gate(baseline_stage="detector"), "baseline_stage"),
        (Gate(video_cgF1=10.0), "video_cgF1"),
    ):
        decision = decide("pretrain", gate, {"recognition_AUC": 0.93}, {"recognition_AUC": 0.99}, 2)
        assert not decision.passed, gate
        assert f"{named} set, but the pretrain stage makes no detections" in decision.reasons


def test_image_stages_keep_their_detection_rules() -> None:
    # the stage decides which rules apply, not the metrics: a detector evaluation without cgF1 fails
    lost = decide("detector", Gate(), {"recognition_AUC": 0.93})
    assert not lost.passed and "cgF1 missing from the evaluation" in lost.reasons
    asked = decide("detector", Gate(recognition_AUC=0.5), GOOD)
    assert not asked.passed and "recognition_AUC missing from the evaluation" in asked.reasons


def test_gate_step_on_a_pretrain_evaluation(store: ObjectStore) -> None:
    store.put_json("runs/p/pretrain/eval/metrics.json", PRETRAIN_DOC)
    for floor, verdict in ((0.9, True), (0.95, False)):
        decision = gate_stage(
            store,
            stage="pretrain",
            gate=Gate(recognition_AUC=floor),
            metrics_uri=store.uri("runs/p/pretrain/eval/metrics.json"),
            model="m",
            run_id="p",
            record_key="runs/p/executions/e/pretrain.gate.json",
        )
        assert decision.passed is verdict and decision.metrics == {"recognition_AUC": 0.93}
        assert store.get_json("runs/p/executions/e/pretrain.gate.json")["passed"] is verdict


def test_regression_against_the_base_the_run_started_from() -> None:
    gate = Gate(max_base_regression=0.5)
    kept = decide("detector", gate, GOOD, base={"cgF1": 55.4})
    assert kept.passed and "cgF1 55 >= base 55.4 - 0.5" in kept.reasons
    worse = decide("detector", gate, GOOD, base={"cgF1": 60.0})
    assert not worse.passed and "cgF1 55 < base 60 - 0.5" in worse.reasons
    unknown = decide("detector", gate, GOOD)  # the config refuses the rule without a base; never a pass
    assert not unknown.passed and "no evaluation of the base to compare with" in unknown.reasons
    # beside the check against production: both apply
    both = decide(
        "presence", Gate(max_base_regression=0, max_regression=0), GOOD, {"cgF1": 56.0}, 2, None, {"cgF1": 50}
    )
    assert not both.passed and any("production v2" in r for r in both.reasons)
    assert "max_base_regression" in Gate(max_base_regression=0).detection_rules()


def test_gate_step_reads_the_base_evaluation(store: ObjectStore) -> None:
    store.put_json(
        "runs/r/detector/eval/metrics.json", {"result": {**GOOD, "cgF1@0.5": 60.0, "cgF1@0.75": 50.0}}
    )
    store.put_json(
        "runs/r/base/eval/metrics.json",
        {"result": {**GOOD, "cgF1": 70.0, "cgF1@0.5": 75.0, "cgF1@0.75": 65.0}},
    )
    decision = gate_stage(
        store,
        stage="detector",
        gate=Gate(max_base_regression=1.0),
        metrics_uri=store.uri("runs/r/detector/eval/metrics.json"),
        model="m",
        run_id="r",
        record_key="runs/r/executions/e/detector.gate.json",
        base_metrics_uri=store.uri("runs/r/base/eval/metrics.json"),
    )
    assert not decision.passed and "cgF1 55 < base 70 - 1" in decision.reasons
