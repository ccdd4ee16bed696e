"""Prometheus metrics shared by the steps (names start with ``sam3_``).

Short batch steps (ingest, negatives, the gate) count into their own registry
and push it to a Pushgateway when ``SAM3_PUSHGATEWAY_URL`` is set; long-running
training ranks serve ``/metrics`` instead. A push that fails is logged as a
warning and never fails the step.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, push_to_gateway

log = logging.getLogger(__name__)

PUSHGATEWAY_ENV = "SAM3_PUSHGATEWAY_URL"


class IngestMetrics:
    """Counters for one ingest (or negatives) run."""

    def __init__(self, dataset: str) -> None:
        self.dataset = dataset
        self.registry = CollectorRegistry()
        self.records = Counter(
            "sam3_ingest_records",
            "Records written into dataset shards",
            ["dataset", "source", "unit"],
            registry=self.registry,
        )
        self.rejects = Counter(
            "sam3_ingest_rejects",
            "Input records rejected, by source and reason code",
            ["dataset", "source", "reason"],
            registry=self.registry,
        )
        self.bytes = Counter(
            "sam3_ingest_shard_bytes",
            "Bytes of Parquet shards written",
            ["dataset", "source"],
            registry=self.registry,
        )

    def count_records(self, source: str, media: int, queries: int) -> None:
        self.records.labels(self.dataset, source, "media").inc(media)
        self.records.labels(self.dataset, source, "queries").inc(queries)

    def count_reject(self, source: str, reason: str) -> None:
        self.rejects.labels(self.dataset, source, reason).inc()

    def push(self, job: str, grouping: Mapping[str, str] | None = None) -> bool:
        """Push to the Pushgateway named by SAM3_PUSHGATEWAY_URL; False when none is configured."""
        return _push(self.registry, job, grouping)


class GateMetrics:
    """A gate decision: ``sam3_gate_passed`` (1/0) and ``sam3_eval_metric`` per headline metric.

    Labels ``model, stage, run_id`` (and ``metric``). One Pushgateway group per
    (model, stage): the latest decision replaces the previous one, so an alert on
    ``sam3_gate_passed == 0`` resolves when the next gate of that model and stage passes.
    """

    JOB = "sam3-gate"

    def __init__(self, model: str, stage: str, run_id: str) -> None:
        self.labels = {"model": model, "stage": stage, "run_id": run_id}
        self.registry = CollectorRegistry()
        names = list(self.labels)
        self.passed = Gauge(
            "sam3_gate_passed",
            "1 when the stage's gate passed, 0 when it failed",
            names,
            registry=self.registry,
        )
        self.metric = Gauge(
            "sam3_eval_metric",
            "Headline evaluation metric the gate decided on (cgF1, pmF1 0-100; IL_MCC -1..1; "
            "recognition_AUC 0..1)",
            [*names, "metric"],
            registry=self.registry,
        )

    def record(self, passed: bool, metrics: Mapping[str, float]) -> GateMetrics:
        self.passed.labels(**self.labels).set(1.0 if passed else 0.0)
        for name, value in metrics.items():
            self.metric.labels(**self.labels, metric=name).set(float(value))
        return self

    def push(self) -> bool:
        """Push to SAM3_PUSHGATEWAY_URL; False when none is configured or the gateway is unreachable."""
        grouping = {"model": self.labels["model"], "stage": self.labels["stage"]}
        return _push(self.registry, self.JOB, grouping)


def push_gate_decision(
    model: str, stage: str, run_id: str, passed: bool, metrics: Mapping[str, float]
) -> bool:
    """Record a gate decision and push it (a no-op without SAM3_PUSHGATEWAY_URL)."""
    return GateMetrics(model, stage, run_id).record(passed, metrics).push()


def _push(registry: CollectorRegistry, job: str, grouping: Mapping[str, str] | None) -> bool:
    url = os.environ.get(PUSHGATEWAY_ENV)
    if not url:
        return False
    try:
        push_to_gateway(url, job=job, registry=registry, grouping_key=dict(grouping or {}), timeout=10)
    except OSError as exc:  # metrics must never fail the step that reports them
        log.warning("could not push metrics to %s: %s", url, exc)
        return False
    return True
