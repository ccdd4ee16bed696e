"""The kustomize overlays and the GitOps folder render, and every object is what a cluster accepts.

Rendered with ``kubectl kustomize``; built-in kinds checked by kubernetes-validate (strict, Kubernetes
``K8S_VERSION``), custom kinds by the CRD-derived schemas in ``schemas/``. Broken copies of the
rendered objects must fail, naming the object and the problem.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from components.images import image
from pipeline.config import CONFIGS, PipelineConfig
from tests.manifests.validate import (
    BIN,
    K8S_VERSION,
    MANIFESTS,
    all_errors,
    allows,
    bound_roles,
    custom_schemas,
    documents,
    errors,
    ingress_admitted,
    name_of,
    namespace_problems,
    pod_security_problems,
    render,
    secret_problems,
)
from tools import sync_training_config

TARGETS = ["overlays/local", "overlays/production", "gitops"]
Doc = dict[str, Any]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Doc]]:
    return {target: documents(render(MANIFESTS / target)) for target in TARGETS}


def find(docs: list[Doc], kind: str, name: str | None = None) -> Doc:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert found, f"no {kind} {name or ''} in the rendered manifests"
    return found[0]


@pytest.mark.parametrize("target", TARGETS)
def test_kubernetes_validate_accepts_the_rendered_target(target: str) -> None:
    """`kubectl kustomize T | kubernetes-validate --strict`: no error, and a WARN (no schema) only for
    a custom kind that schemas/ covers."""
    text = render(MANIFESTS / target)
    done = subprocess.run(
        [BIN / "kubernetes-validate", "--strict", "--quiet", "-k", K8S_VERSION, "-"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
    )
    ours = {f"kind {kind} with api version {api}" for api, kind in custom_schemas()}
    bad = [
        line
        for line in done.stdout.splitlines()
        if line.strip() and not (line.startswith("WARN") and any(k in line for k in ours))
    ]
    assert done.returncode == 0 and not bad, "\n".join(bad) or done.stderr


@pytest.mark.parametrize("target", TARGETS)
def test_every_object_is_valid(rendered: dict[str, list[Doc]], target: str) -> None:
    assert all_errors(rendered[target]) == []


@pytest.mark.parametrize("target", TARGETS)
def test_objects_name_their_namespace(rendered: dict[str, list[Doc]], target: str) -> None:
    problems = namespace_problems(rendered[target])
    assert problems == [], "\n".join(problems)


@pytest.mark.parametrize("target", TARGETS)
def test_no_secret_values(rendered: dict[str, list[Doc]], target: str) -> None:
    assert secret_problems(rendered[target]) == []


@pytest.mark.parametrize("target", TARGETS)
def test_containers_run_as_non_root_with_requests_and_limits(
    rendered: dict[str, list[Doc]], target: str
) -> None:
    assert pod_security_problems(rendered[target]) == []


# -- broken manifests are refused ------------------------------------------------------------------

# The monitoring objects may not be rendered yet (manifests/monitoring belongs to another change):
# these valid references stand in for them in the mutation tests.
REFERENCE = documents(
    """
apiVersion: monitoring.coreos.com/v1
kind: PodMonitor
metadata: {name: sam3-training, namespace: sam3}
spec:
  selector: {matchExpressions: [{key: sam3.dev/stage, operator: Exists}]}
  podMetricsEndpoints: [{port: c10d, path: /metrics, interval: 15s}]
---
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata: {name: sam3-pushgateway, namespace: sam3}
spec:
  selector: {matchLabels: {app.kubernetes.io/name: pushgateway}}
  endpoints: [{port: http, honorLabels: true}]
---
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata: {name: sam3, namespace: sam3}
spec:
  groups: [{name: sam3, rules: [{alert: Sam3GateFailed, expr: sam3_gate_passed == 0, for: 5m}]}]
"""
)


def _container(doc: Doc) -> Doc:
    container: Doc = doc["spec"]["template"]["spec"]["containers"][0]
    return container


def _task(doc: Doc) -> Doc:
    task: Doc = doc["spec"]["tasks"][0]
    return task


# (id, target, kind, name, mutation, what the error must say besides the object's name)
BROKEN: list[tuple[str, str, str, str, Callable[[Doc], Any], str]] = [
    ("unknown-container-field", "overlays/production", "Deployment", "pushgateway",
     lambda d: _container(d).update(resourcez={}), "'resourcez' was unexpected"),
    ("wrong-type-replicas", "overlays/local", "StatefulSet", "minio",
     lambda d: d["spec"].update(replicas="one"), "'one' is not of type"),
    ("misspelt-field", "overlays/local", "Service", "minio",
     lambda d: d["spec"].update(port=d["spec"].pop("ports")), "'port' was unexpected"),
    ("role-verbs-not-a-list", "overlays/production", "Role", "sam3-pipeline",
     lambda d: d["rules"][0].update(verbs="create"), "'create' is not of type 'array'"),
    ("queue-unknown-field", "overlays/production", "Queue", "sam3",
     lambda d: d["spec"].update(wieght=1), "'wieght' was unexpected"),
    ("queue-weight-zero", "overlays/production", "Queue", "sam3",
     lambda d: d["spec"].update(weight=0), "0 is less than the minimum of 1"),
    ("queue-capability-not-a-map", "overlays/production", "Queue", "sam3",
     lambda d: d["spec"].update(capability="16"), "'16' is not of type 'object'"),
    ("podmonitor-without-selector", "reference", "PodMonitor", "sam3-training",
     lambda d: d["spec"].pop("selector"), "'selector' is a required property"),
    ("podmonitor-bad-interval", "reference", "PodMonitor", "sam3-training",
     lambda d: d["spec"]["podMetricsEndpoints"][0].update(interval="15 seconds"), "does not match"),
    ("servicemonitor-endpoints-not-a-list", "reference", "ServiceMonitor", "sam3-pushgateway",
     lambda d: d["spec"].update(endpoints={"port": "http"}), "is not of type 'array'"),
    ("prometheusrule-rule-without-expr", "reference", "PrometheusRule", "sam3",
     lambda d: d["spec"]["groups"][0]["rules"][0].pop("expr"), "'expr' is a required property"),
    ("application-without-destination", "gitops", "Application", "sam3",
     lambda d: d["spec"].pop("destination"), "'destination' is a required property"),
    ("application-unknown-field", "gitops", "Application", "sam3",
     lambda d: d["spec"]["syncPolicy"].update(autoSync=True), "'autoSync' was unexpected"),
    ("retrain-job-backofflimit-string", "gitops", "Job", None,
     lambda d: d["spec"].update(backoffLimit="4"), "'4' is not of type 'integer'"),
    ("profile-owner-not-a-subject", "overlays/production", "Profile", "sam3",
     lambda d: d["spec"].update(owner="user@example.com"), "is not of type 'object'"),
    ("profile-owner-without-kind", "overlays/production", "Profile", "sam3",
     lambda d: d["spec"]["owner"].pop("kind"), "'kind' is a required property"),
    ("profile-unknown-field", "overlays/local", "Profile", "sam3",
     lambda d: d["spec"].update(owners=[]), "'owners' was unexpected"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("target", "kind", "name", "mutate", "problem"),
    [pytest.param(*case[1:], id=case[0]) for case in BROKEN],
)
def test_broken_manifest_is_refused(
    rendered: dict[str, list[Doc]],
    target: str,
    kind: str,
    name: str | None,
    mutate: Callable[[Doc], Any],
    problem: str,
) -> None:
    doc = copy.deepcopy(find(REFERENCE if target == "reference" else rendered[target], kind, name))
    assert errors(doc) == [], "the unbroken object must be valid"
    mutate(doc)
    found = errors(doc)
    assert found, f"{kind} {name}: the broken object was accepted"
    assert any(f"{kind} " in e and doc.get("metadata", {}).get("name", "?") in e for e in found), found
    assert any(problem in e for e in found), found


def test_an_unknown_kind_is_refused() -> None:
    doc = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": "sam3"}}
    assert errors(doc) == ["Widget sam3/w: no schema: " + errors(doc)[0].split("no schema: ", 1)[1]]
    assert "Couldn't find schema for kind Widget" in errors(doc)[0]


def test_the_policy_checks_catch_what_they_must(rendered: dict[str, list[Doc]]) -> None:
    docs = copy.deepcopy(rendered["overlays/production"])
    minio = find(docs, "StatefulSet", "minio")
    c = _container(minio)
    c["env"].append({"name": "MINIO_ROOT_PASSWORD", "value": "hunter2hunter2"})
    c["securityContext"]["runAsUser"] = 0
    c["securityContext"].pop("allowPrivilegeEscalation")
    c["resources"].pop("limits")
    c["image"] = "quay.io/minio/minio:latest"
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "sam3-s3", "namespace": "sam3"}}
    secret["stringData"] = {"access-key": "AKIAABCDEFGHIJKLMNOP"}
    docs.append(secret)
    found = secret_problems(docs) + pod_security_problems(docs)
    for problem in [
        "Secret sam3/sam3-s3: a Secret with data",
        "env MINIO_ROOT_PASSWORD has a literal value",
        "looks like a credential: AKIA",
        "runAsUser is 0",
        "allowPrivilegeEscalation is not false",
        "resources.limits lacks ['cpu', 'memory']",
        "is not pinned to a version ('latest')",
    ]:
        assert any(problem in f for f in found), (problem, found)
    assert all("StatefulSet sam3/minio" in f or "Secret sam3/sam3-s3" in f for f in found), found


# -- what the platform provides ---------------------------------------------------------------------


@pytest.mark.parametrize("target", ["overlays/local", "overlays/production"])
def test_the_platform_matches_the_pipeline_config(rendered: dict[str, list[Doc]], target: str) -> None:
    """The names the pipeline config (its Kubernetes defaults) refers to exist."""
    docs, k8s = rendered[target], PipelineConfig.load(Path("pipeline/configs/cluster.yaml")).kubernetes
    assert find(docs, "Namespace", k8s.namespace)
    assert find(docs, "Queue", k8s.queue)
    assert find(docs, "PriorityClass", k8s.priority_class)
    for account in (k8s.pipeline_service_account, k8s.trainer_service_account):
        assert find(docs, "ServiceAccount", account)["metadata"]["namespace"] == k8s.namespace
    host, port = k8s.s3_endpoint.split(":")
    service = find(docs, "Service", host.split(".")[0])
    assert service["metadata"]["namespace"] == host.split(".")[1]
    assert int(port) in [p["port"] for p in service["spec"]["ports"]]
    gateway = urlsplit(k8s.pushgateway_url)  # where the steps push their metrics
    assert gateway.hostname and gateway.hostname.split(".")[2:] == ["svc"]
    pushgateway = find(docs, "Service", gateway.hostname.split(".")[0])
    assert pushgateway["metadata"]["namespace"] == gateway.hostname.split(".")[1]
    assert gateway.port in [p["port"] for p in pushgateway["spec"]["ports"]]
    refs = {
        (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
        for e in _container(find(docs, "StatefulSet", "minio"))["env"]
        if "valueFrom" in e
    }
    assert refs == {(k8s.s3_secret, "access-key"), (k8s.s3_secret, "secret-key")}
    storage = find(docs, "StatefulSet", "minio")["spec"]["volumeClaimTemplates"][0]["spec"]
    assert storage["storageClassName"]


@pytest.mark.parametrize("target", ["overlays/local", "overlays/production"])
def test_the_pipeline_role_is_least_privilege(rendered: dict[str, list[Doc]], target: str) -> None:
    docs = rendered[target]
    assert not [d for d in docs if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    role = find(docs, "Role", "sam3-pipeline")
    rules = {
        (g, r): (sorted(rule["verbs"]), sorted(rule.get("resourceNames", [])))
        for rule in role["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
    }
    assert rules == {
        ("batch.volcano.sh", "jobs"): (["create", "delete", "get", "list", "watch"], []),
        ("batch.volcano.sh", "jobs/status"): (["get"], []),  # TorchX's describe reads the status subresource
        ("", "pods"): (["get", "list", "watch"], []),
        ("", "pods/log"): (["get"], []),
        ("", "configmaps"): (["get"], ["kfp-launcher"]),  # KFP's driver and launcher: the launcher config
        ("", "secrets"): (["get"], ["mlpipeline-minio-artifact"]),  # KFP's launcher: the artifact store
        ("argoproj.io", "workflowtaskresults"): (["create", "patch"], []),  # Argo's executor: step outputs
    }
    binding = find(docs, "RoleBinding", "sam3-pipeline")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "sam3-pipeline",
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "sam3-pipeline", "namespace": "sam3"}]
    assert find(docs, "ServiceAccount", "sam3-trainer")["automountServiceAccountToken"] is False


KFP_RUNTIME_NEEDS = [
    # (verb, API group, resource, object name or None for any): what runs in a step's pods, as the run's
    # service account, in the run's namespace (KFP 2.16 and the Argo it ships, 3.7)
    ("get", "", "pods", None),  # KFP's driver reads its own pod
    ("get", "", "configmaps", "kfp-launcher"),  # KFP's driver and launcher: pipeline root, providers
    ("get", "", "secrets", "mlpipeline-minio-artifact"),  # KFP's launcher: the artifact store's keys
    ("create", "argoproj.io", "workflowtaskresults", None),  # Argo's executor reports a step's outputs
    ("patch", "argoproj.io", "workflowtaskresults", None),
]
TRAIN_STEP_NEEDS = [
    ("create", "batch.volcano.sh", "jobs", None),
    ("get", "batch.volcano.sh", "jobs/status", None),
    ("watch", "batch.volcano.sh", "jobs", None),
    ("delete", "batch.volcano.sh", "jobs", None),
    ("get", "", "pods/log", None),
]


@pytest.mark.parametrize("target", ["overlays/local", "overlays/production"])
def test_the_runs_service_account_may_do_what_its_pods_do_in_the_namespace(
    rendered: dict[str, list[Doc]], target: str
) -> None:
    """A run's pods run in the profile namespace as the pipeline's service account (submit names it): KFP's
    driver and launcher and Argo's executor act as that account beside the step, the train step submits
    the Volcano job. Nothing more: not the KFP API, not another Secret, not a workflow."""
    docs, k8s = rendered[target], PipelineConfig.load(Path("pipeline/configs/cluster.yaml")).kubernetes
    account, namespace = k8s.pipeline_service_account, k8s.namespace
    for verb, group, resource, name in KFP_RUNTIME_NEEDS + TRAIN_STEP_NEEDS:
        assert allows(docs, account, namespace, verb, group, resource, name), (verb, group, resource, name)
    for verb, group, resource, name in [
        ("get", "", "secrets", k8s.s3_secret),  # the steps get its keys by reference, from the kubelet
        ("get", "", "configmaps", "sam3-retrain"),
        ("patch", "", "pods", None),  # Argo >= 3.4 reports outputs as WorkflowTaskResults, not on the pod
        ("create", "argoproj.io", "workflows", None),
        ("create", "", "pods", None),
    ]:
        assert not allows(docs, account, namespace, verb, group, resource, name), (verb, resource, name)
    assert all(ref["kind"] == "Role" for ref in bound_roles(docs, account, namespace))
    for verb, group, resource, name in KFP_RUNTIME_NEEDS:
        assert not allows(docs, account, "kubeflow", verb, group, resource, name)


KFP_EDIT = {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "kubeflow-pipelines-edit"}
"""KFP's ClusterRole for creating runs, experiments and recurring runs through its API (multi-user)."""


@pytest.mark.parametrize("target", ["overlays/local", "overlays/production"])
def test_the_submitter_may_use_the_kfp_api_in_the_namespace(
    rendered: dict[str, list[Doc]], target: str
) -> None:
    """The retraining Job submits as its own service account, which KFP's API server authorizes against
    kubeflow-pipelines-edit in the namespace; the run's service account has no such right."""
    docs, k8s = rendered[target], PipelineConfig.load(Path("pipeline/configs/cluster.yaml")).kubernetes
    _, job = _retrain(rendered["gitops"])
    submitter = job["spec"]["template"]["spec"]["serviceAccountName"]
    namespace = job["metadata"]["namespace"]
    assert namespace == k8s.namespace and submitter != k8s.pipeline_service_account
    account = find(docs, "ServiceAccount", submitter)
    assert account["metadata"]["namespace"] == namespace
    assert account["automountServiceAccountToken"] is False  # it presents the token projected for KFP
    assert bound_roles(docs, submitter, namespace) == [KFP_EDIT]
    assert KFP_EDIT not in bound_roles(docs, k8s.pipeline_service_account, namespace)
    binding = next(d for d in docs if d["kind"] == "RoleBinding" and d["roleRef"] == KFP_EDIT)
    assert binding["metadata"]["namespace"] == namespace


@pytest.mark.parametrize("target", ["overlays/local", "overlays/production"])
def test_the_namespace_is_a_profile_namespace_for_kfp(rendered: dict[str, list[Doc]], target: str) -> None:
    """The Profile that owns the namespace is the namespace's name; the Namespace carries its owner, so
    that the Profile controller adopts it whichever comes first, and KFP's label, so that KFP's profile
    controller writes the launcher's config and the artifact store's Secret into it."""
    docs, k8s = rendered[target], PipelineConfig.load(Path("pipeline/configs/cluster.yaml")).kubernetes
    profile = find(docs, "Profile", k8s.namespace)
    assert errors(profile) == [] and "namespace" not in profile["metadata"]
    namespace = find(docs, "Namespace", k8s.namespace)
    assert namespace["metadata"]["annotations"]["owner"] == profile["spec"]["owner"]["name"]
    assert profile["spec"]["owner"]["kind"] == "User"
    assert namespace["metadata"]["labels"]["pipelines.kubeflow.org/enabled"] == "true"


def test_the_profile_owner_is_set_in_one_place(tmp_path: Path) -> None:
    shutil.copytree(MANIFESTS, tmp_path / "manifests")
    profile = tmp_path / "manifests" / "components" / "profile" / "profile.yaml"
    text = profile.read_text()
    before = yaml.safe_load(text)["spec"]["owner"]["name"]
    assert text.count(before) == 2  # the comment naming it, and the value
    profile.write_text(text.replace(f"name: {before}", "name: ml-platform@example.org"))
    docs = documents(render(tmp_path / "manifests" / "overlays" / "production"))
    assert find(docs, "Namespace", "sam3")["metadata"]["annotations"]["owner"] == "ml-platform@example.org"
    assert find(docs, "Profile", "sam3")["spec"]["owner"]["name"] == "ml-platform@example.org"


def _overlay_prometheus_namespace(overlay: Path) -> str:
    """The namespace the overlay's patch of NetworkPolicy sam3-training-metrics admits Prometheus from."""
    kustomization = yaml.safe_load((overlay / "kustomization.yaml").read_text())
    (patch,) = [p for p in kustomization["patches"] if p["target"]["kind"] == "NetworkPolicy"]
    (op,) = yaml.safe_load(patch["patch"])
    assert op["path"].endswith("/namespaceSelector/matchLabels/kubernetes.io~1metadata.name"), op
    value: str = op["value"]
    return value


def _admits_prometheus(docs: list[Doc], namespace: str) -> bool:
    """Whether Prometheus in ``namespace`` may scrape every local rank of a training pod (a pod the
    launcher labelled, its metrics ports from pipeline/configs/cluster.yaml)."""
    cfg = PipelineConfig.load(Path("pipeline/configs/cluster.yaml"))
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    pod = (cfg.kubernetes.namespace, {"sam3.dev/stage": "detector", "sam3.dev/run-id": "r"})
    port = cfg.train_config("detector", "s3://sam3/datasets/d/1").metrics_port
    prometheus = (namespace, {"app.kubernetes.io/name": "prometheus"})
    nproc = cfg.stage("detector").resources.nproc
    return bool(policies) and all(
        ingress_admitted(policies, prometheus, pod, p) for p in range(port, port + nproc)
    )


@pytest.mark.parametrize("target", ["overlays/local", "overlays/production"])
def test_prometheus_may_scrape_the_training_pods(rendered: dict[str, list[Doc]], target: str) -> None:
    """Volcano's svc plugin isolates each training job; the overlay's NetworkPolicy lets the Prometheus
    of the namespace the overlay names through to the metrics ports."""
    namespace = _overlay_prometheus_namespace(MANIFESTS / target)
    policy = find(rendered[target], "NetworkPolicy", "sam3-training-metrics")
    assert policy["metadata"]["namespace"] == "sam3"
    assert _admits_prometheus(rendered[target], namespace)
    assert not _admits_prometheus(rendered[target], "default")


def test_the_overlay_sets_the_prometheus_namespace(tmp_path: Path) -> None:
    shutil.copytree(MANIFESTS, tmp_path / "manifests")
    overlay = tmp_path / "manifests" / "overlays" / "production"
    path = overlay / "kustomization.yaml"
    before = _overlay_prometheus_namespace(overlay)
    text = path.read_text()
    assert text.count(f"value: {before}\n") == 1
    path.write_text(text.replace(f"value: {before}\n", "value: observability\n"))
    docs = documents(render(overlay))
    assert _admits_prometheus(docs, "observability") and not _admits_prometheus(docs, before)


# -- GitOps -----------------------------------------------------------------------------------------


def _retrain(docs: list[Doc]) -> tuple[Doc, Doc]:
    return find(docs, "ConfigMap"), find(docs, "Job")


def test_the_retrain_job_is_named_after_the_config_content(rendered: dict[str, list[Doc]]) -> None:
    config_map, job = _retrain(rendered["gitops"])
    name = config_map["metadata"]["name"]
    assert name.startswith("sam3-retrain-") and len(name) > len("sam3-retrain-")
    assert job["metadata"]["name"] == name
    pod = job["spec"]["template"]["spec"]
    assert [v["configMap"]["name"] for v in pod["volumes"] if "configMap" in v] == [name]
    assert pod["serviceAccountName"] == "sam3-submitter"
    (container,) = pod["containers"]
    assert container["image"] == image("component")
    assert container["command"] == [
        "sam3-pipeline", "submit", "--config", "/config/training-config.yaml",
        "--host", "http://ml-pipeline.kubeflow:8888",
        "--namespace", "$(KFP_NAMESPACE)", "--token-path", "/var/run/secrets/kubeflow/pipelines/token",
    ]  # fmt: skip
    mounted = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert (Path(mounted["config"]) / "training-config.yaml").as_posix() == container["command"][3]


KFP_AUDIENCE = "pipelines.kubeflow.org"  # the audience the KFP API server accepts service account tokens for


def _option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_the_retrain_job_presents_a_projected_token_for_kfp(rendered: dict[str, list[Doc]]) -> None:
    """The file --token-path names is the pod's service account token, projected for KFP's audience."""
    _, job = _retrain(rendered["gitops"])
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    token_path = Path(_option(container["command"], "--token-path"))
    (mount,) = [m for m in container["volumeMounts"] if Path(m["mountPath"]) == token_path.parent]
    assert mount["readOnly"] is True
    volume = {v["name"]: v for v in pod["volumes"]}[mount["name"]]
    (source,) = volume["projected"]["sources"]
    token = source["serviceAccountToken"]
    assert token["audience"] == KFP_AUDIENCE and token["path"] == token_path.name
    assert 600 <= token["expirationSeconds"] <= 86400  # rotated by the kubelet, re-read by the client


def test_the_retrain_job_submits_into_its_own_namespace(rendered: dict[str, list[Doc]]) -> None:
    """The run goes to the profile namespace the Job runs in: that of its service account, which is the
    namespace the training config places the pipeline's steps and jobs in."""
    config_map, job = _retrain(rendered["gitops"])
    (container,) = job["spec"]["template"]["spec"]["containers"]
    variable = _option(container["command"], "--namespace")
    assert variable.startswith("$(") and variable.endswith(")")
    env = {e["name"]: e for e in container["env"]}
    assert env[variable[2:-1]]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    cfg = PipelineConfig.parse(config_map["data"]["training-config.yaml"])
    assert job["metadata"]["namespace"] == cfg.kubernetes.namespace


def _expand(arg: str, env: list[Doc], namespace: str) -> str:
    """Kubernetes' $(VAR) expansion of a container's command, for literal and metadata.namespace values."""
    for e in env:
        value = e.get("value")
        if value is None and e["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}:
            value = namespace
        arg = arg.replace(f"$({e['name']})", value)
    return arg


def test_the_retrain_jobs_command_submits_with_its_token_into_its_namespace(
    rendered: dict[str, list[Doc]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The Job's own command, run here against a stand-in for kfp.Client, with its volumes as folders:
    the client authenticates with the projected token, and the run lands in the Job's namespace."""
    from tests.pipeline.fake_kfp import authorization, install, run_cli

    fake = install(monkeypatch)
    monkeypatch.delenv("SAM3_KFP_TOKEN", raising=False)
    config_map, job = _retrain(rendered["gitops"])
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    folders = {}
    for mount in container["volumeMounts"]:
        folder = folders[mount["mountPath"]] = tmp_path / mount["name"]
        folder.mkdir()
        volume = volumes[mount["name"]]
        if "configMap" in volume:
            for key, text in config_map["data"].items():
                (folder / key).write_text(text)
        for source in volume.get("projected", {}).get("sources", []):
            (folder / source["serviceAccountToken"]["path"]).write_text("the-pods-token\n")
    args = []
    for arg in container["command"][1:]:
        arg = _expand(arg, container.get("env", []), job["metadata"]["namespace"])
        inside = [m for m in folders if arg.startswith(m + "/")]
        args.append(str(folders[inside[0]]) + arg.removeprefix(inside[0]) if inside else arg)
    code, out, err = run_cli(monkeypatch, capsys, *args)
    assert code == 0, err
    (client,) = fake.built
    assert client.kwargs["host"] == _option(container["command"], "--host")
    assert authorization(client.kwargs["credentials"]) == "Bearer the-pods-token"
    (run,) = client.created_runs
    assert run.namespace == run.asked_namespace == job["metadata"]["namespace"] == "sam3"
    cfg = PipelineConfig.parse(config_map["data"]["training-config.yaml"])
    # the Job submits as its own account; the run's pods run as the pipeline's
    assert run.service_account == cfg.kubernetes.pipeline_service_account != pod["serviceAccountName"]
    assert out.strip().splitlines()[-1] == "run-1"


def _repo_url_patch(gitops: Path) -> dict[str, str]:
    kustomization = yaml.safe_load((gitops / "kustomization.yaml").read_text())
    (patch,) = [p for p in kustomization["patches"] if p["target"]["kind"] == "Application"]
    return {op["path"]: op["value"] for op in yaml.safe_load(patch["patch"])}


def test_the_repository_is_set_once_in_the_kustomization(
    rendered: dict[str, list[Doc]], tmp_path: Path
) -> None:
    """Both Applications sync from the repository the kustomization's patch names; applications.yaml names
    none, so a fork or a mirror changes one value."""
    source = _repo_url_patch(MANIFESTS / "gitops")
    url = source["/spec/source/repoURL"]
    assert url.startswith("https://") and url.endswith(".git")
    listed = documents((MANIFESTS / "gitops" / "applications.yaml").read_text())
    assert all("repoURL" not in app["spec"]["source"] for app in listed)
    apps = [d for d in rendered["gitops"] if d["kind"] == "Application"]
    assert len(apps) == 2
    assert all(a["spec"]["source"]["repoURL"] == url for a in apps)
    assert all(a["spec"]["source"]["targetRevision"] == source["/spec/source/targetRevision"] for a in apps)
    fork = tmp_path / "gitops"
    shutil.copytree(MANIFESTS / "gitops", fork)
    kustomization = fork / "kustomization.yaml"
    kustomization.write_text(kustomization.read_text().replace(url, "https://git.example.com/ml/sam3.git"))
    moved = [d for d in documents(render(fork)) if d["kind"] == "Application"]
    assert [a["spec"]["source"]["repoURL"] for a in moved] == ["https://git.example.com/ml/sam3.git"] * 2


def test_a_changed_config_makes_a_new_job_and_the_same_config_the_same(tmp_path: Path) -> None:
    copy_dir = tmp_path / "gitops"
    shutil.copytree(MANIFESTS / "gitops", copy_dir)
    first = _retrain(documents(render(copy_dir)))[1]["metadata"]["name"]
    assert _retrain(documents(render(copy_dir)))[1]["metadata"]["name"] == first
    config = copy_dir / "training-config.yaml"
    more_steps = re.sub(r"steps: (\d+)", lambda m: f"steps: {int(m[1]) + 1000}", config.read_text(), count=1)
    config.write_text(more_steps)
    changed = _retrain(documents(render(copy_dir)))[1]["metadata"]["name"]
    assert changed != first and changed.startswith("sam3-retrain-")


def test_the_training_config_in_git_is_a_valid_cluster_config(rendered: dict[str, list[Doc]]) -> None:
    config_map, _ = _retrain(rendered["gitops"])
    text = config_map["data"]["training-config.yaml"]
    assert text == (MANIFESTS / "gitops" / "training-config.yaml").read_text()
    cfg = PipelineConfig.parse(text, "manifests/gitops/training-config.yaml")
    assert cfg.scheduler == "kubernetes"


def test_the_training_config_in_git_is_the_cluster_config() -> None:
    """GitOps submits pipeline/configs/cluster.yaml: its copy in manifests/gitops is generated. The run it
    starts fine-tunes the base the config names (resolved by the run's resolve-base step), as a
    `sam3-pipeline run` of a config with a base does; it trains no stage 0."""
    assert sync_training_config.main(["--check"]) == 0, "python -m tools.sync_training_config"
    gitops = PipelineConfig.load(sync_training_config.TRAINING_CONFIG)
    assert gitops == PipelineConfig.load(CONFIGS / "cluster.yaml")
    assert gitops.base is not None and gitops.base.reference == "sam3-full@released"
    assert gitops.stages()[0] == "detector" and gitops.pretrain is None
    assert all(gitops.stage(s).gate.max_base_regression is not None for s in gitops.stages())


def test_argo_cd_syncs_the_production_overlay_and_the_trigger(rendered: dict[str, list[Doc]]) -> None:
    apps = {d["metadata"]["name"]: d for d in rendered["gitops"] if d["kind"] == "Application"}
    paths = {name: app["spec"]["source"]["path"] for name, app in apps.items()}
    assert paths == {"sam3": "manifests/overlays/production", "sam3-retrain": "manifests/gitops"}
    for app in apps.values():
        assert (MANIFESTS.parent / app["spec"]["source"]["path"] / "kustomization.yaml").is_file()
        assert app["spec"]["destination"]["namespace"] == "sam3"
        assert app["spec"]["syncPolicy"]["automated"] == {"prune": True, "selfHeal": True}


def test_the_monitoring_folder_is_part_of_both_overlays() -> None:
    for overlay in ("local", "production"):
        kustomization = yaml.safe_load((MANIFESTS / "overlays" / overlay / "kustomization.yaml").read_text())
        assert "../../monitoring" in kustomization["resources"], overlay


def test_messages_name_the_object() -> None:
    doc = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "sam3"}}
    doc["data"] = {"k": 1}
    assert errors(doc) and errors(doc)[0].startswith(f"{name_of(doc)}: data.k: ")
