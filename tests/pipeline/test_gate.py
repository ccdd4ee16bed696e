"""The gate policy, both outcomes of every rule; and the gate step against a real registry."""

from __future__ import annotations

from components.gate.policy import Gate, decide, gate_stage
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
