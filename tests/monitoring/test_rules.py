"""The alerting and recording rules: promtool checks and unit tests, and the PrometheusRule copy."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from tests.monitoring.names import RULE_TESTS, RULES, known, metric_names
from tools import sync_rules


def promtool() -> str:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool is not installed: .ci/run installs it with apt-get install prometheus")
    return binary


def test_promtool_check_rules() -> None:
    out = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_promtool_unit_tests_pass() -> None:
    out = subprocess.run(
        [promtool(), "test", "rules", RULE_TESTS.name],
        capture_output=True,
        text=True,
        cwd=RULE_TESTS.parent,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_alert_is_unit_tested_firing_and_not_firing() -> None:
    alerts = {
        r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "alert" in r
    }
    fires: set[str] = set()
    quiet: set[str] = set()
    for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert alerts == {
        "Sam3GpuUnderutilized",
        "Sam3TrainingStalled",
        "Sam3CheckpointOverdue",
        "Sam3TrainingPodPending",
        "Sam3GateFailed",
        "Sam3IngestRejectsHigh",
    }
    assert alerts - fires == set(), "alerts never shown firing"
    assert alerts - quiet == set(), "alerts never shown quiet"


def test_rules_read_only_metrics_that_exist() -> None:
    names = known()
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            used = metric_names(rule["expr"])
            assert used, rule
            assert used <= names, (rule.get("alert") or rule.get("record"), used - names)


def test_prometheus_rule_spec_is_the_rules_file() -> None:
    resource = yaml.safe_load(sync_rules.PROMETHEUS_RULE.read_text())
    assert resource["apiVersion"] == "monitoring.coreos.com/v1" and resource["kind"] == "PrometheusRule"
    assert resource["spec"] == yaml.safe_load(RULES.read_text()), (
        "prometheusrule.yaml is stale: python -m tools.sync_rules"
    )
    assert sync_rules.main(["--check"]) == 0
