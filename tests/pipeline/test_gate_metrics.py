"""Gate decisions reach a real Pushgateway (sam3_gate_passed, sam3_eval_metric); a dead one fails nothing."""

from __future__ import annotations

import logging
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from components.gate.policy import Gate, gate_stage
from components.storage import ObjectStore
from components.telemetry import GateMetrics
from tests.conftest import free_port

GOOD = {"cgF1": 55.0, "IL_MCC": 0.8, "pmF1": 68.75, "cgF1@0.5": 60.0, "cgF1@0.75": 50.0}


def scrape(pushgateway: str, model: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = urllib.request.urlopen(f"{pushgateway}/metrics", timeout=5).read().decode()
    return {
        (
            s.name,
            tuple(sorted((k, v) for k, v in s.labels.items() if k not in ("model", "instance"))),
        ): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.labels.get("model") == model and s.name.startswith("sam3_")
    }


def run_gate(store: ObjectStore, model: str, run_id: str, floor: float) -> bool:
    key = f"runs/{run_id}/detector/eval/metrics.json"
    store.put_json(key, {"result": GOOD})
    return gate_stage(
        store,
        stage="detector",
        gate=Gate(cgF1=floor),
        metrics_uri=store.uri(key),
        model=model,
        run_id=run_id,
        record_key=f"runs/{run_id}/executions/e/detector.gate.json",
    ).passed


def test_gate_step_pushes_its_decision_and_metrics(
    store: ObjectStore, pushgateway: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAM3_PUSHGATEWAY_URL", pushgateway)
    assert not run_gate(store, "gated", "run-a", floor=60)
    got = scrape(pushgateway, "gated")
    base = (("job", "sam3-gate"), ("run_id", "run-a"), ("stage", "detector"))
    assert got[("sam3_gate_passed", base)] == 0
    for name in ("cgF1", "IL_MCC", "pmF1", "cgF1@0.5"):
        labels = tuple(sorted((*base, ("metric", name))))
        assert got[("sam3_eval_metric", labels)] == GOOD[name]

    # the next decision for the same model and stage replaces it (one group per model/stage)
    assert run_gate(store, "gated", "run-b", floor=50)
    got = scrape(pushgateway, "gated")
    passed = {k[1]: v for k, v in got.items() if k[0] == "sam3_gate_passed"}
    assert passed == {(("job", "sam3-gate"), ("run_id", "run-b"), ("stage", "detector")): 1.0}


def test_unreachable_pushgateway_only_warns(
    store: ObjectStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("SAM3_PUSHGATEWAY_URL", url)
    with caplog.at_level(logging.WARNING, logger="components.telemetry"):
        assert run_gate(store, "offline", "run-c", floor=10)
    assert any("could not push metrics" in r.getMessage() and url in r.getMessage() for r in caplog.records)


def test_no_pushgateway_configured_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SAM3_PUSHGATEWAY_URL", raising=False)
    assert GateMetrics("m", "detector", "r").record(True, GOOD).push() is False
