"""The metric names the monitoring may use: what the code exports, the recording rules, DCGM's."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from components.telemetry import GateMetrics, IngestMetrics
from components.train.metrics import TrainingMetrics

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "manifests" / "monitoring"
RULES = MONITORING / "rules" / "sam3.rules.yaml"
RULE_TESTS = MONITORING / "rules" / "sam3.rules.test.yaml"
DASHBOARD = MONITORING / "dashboards" / "sam3-training.json"

# dcgm-exporter's default counters (etc/default-counters.csv) that the rules and dashboard read
DCGM = {"DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED"}
PROMETHEUS = {"up"}  # series Prometheus writes itself
KUBE_STATE_METRICS = {"kube_pod_status_phase", "kube_pod_labels"}  # kube-state-metrics' pod series

# a metric name in PromQL: sam3_*, recording rules sam3:*, DCGM_*, kube_*; not inside a longer name
# (label_sam3_dev_stage) and not a $variable
METRIC = re.compile(r"(?<![\w:$])(sam3[_:][\w:]*|DCGM_\w+|kube_\w+|up)(?![\w:])")
STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def exported() -> set[str]:
    """Sample names the training ranks, ingest and the gate expose (counters with _total)."""
    train = TrainingMetrics("r", "detector", 0, None)
    train.observe_step(1, 2, 0.5, 0.1, {"total": 1.0}, {"0": 1e-4})
    train.observe_checkpoint()
    ingest = IngestMetrics("d")
    ingest.count_records("hq", 1, 1)
    ingest.count_reject("hq", "x")
    gate = GateMetrics("m", "detector", "r").record(True, {"cgF1": 1.0})
    names = {
        sample.name
        for registry in (train.registry, ingest.registry, gate.registry)
        for family in registry.collect()
        for sample in family.samples
    }
    # the NVML families are collected only where a GPU exists: take their names from the source
    source = (REPO / "components" / "train" / "metrics.py").read_text()
    names |= set(re.findall(r'GaugeMetricFamily\(\s*"(sam3_\w+)"', source))
    return names


def recorded() -> set[str]:
    doc = yaml.safe_load(RULES.read_text())
    return {r["record"] for g in doc["groups"] for r in g["rules"] if "record" in r}


def known() -> set[str]:
    return exported() | recorded() | DCGM | PROMETHEUS | KUBE_STATE_METRICS


def metric_names(expr: str) -> set[str]:
    """The metric names an expression reads (label values in quotes are not names)."""
    return set(METRIC.findall(STRING.sub('""', expr)))
