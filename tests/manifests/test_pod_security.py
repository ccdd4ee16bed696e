"""Every pod the platform and the pipeline create in the pipeline's namespace passes the Pod Security level
that namespace enforces (its Namespace's `pod-security.kubernetes.io/enforce` label, `restricted`).

The pods: the platform's (MinIO, the Pushgateway, the retraining Job), a run's step pods as a KFP backend
of the minimum version builds them from the compiled pipeline (tests/pipeline/kfp_pods.py restates what
KFP and Argo add), KFP's driver pods, and the Volcano jobs of the training ranks as TorchX would submit
them. Admission is checked with ``pod_security_level_problems`` (validate.py), itself checked here
against pods that each break one control.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.train.placement import RUN_AS_USER
from pipeline.config import CONFIGS, PipelineConfig
from pipeline.submit import compile_pipeline
from tests.manifests.test_volcano_jobs import JOBS, volcano_job
from tests.manifests.validate import (
    MANIFESTS,
    documents,
    enforced_level,
    pod_security_level_problems,
    pod_security_level_violations,
    render,
)
from tests.pipeline.kfp_pods import driver_pod, step_pod

CLUSTER = Path(__file__).resolve().parents[2] / "pipeline" / "configs" / "cluster.yaml"
Doc = dict[str, Any]


@pytest.fixture(scope="module")
def cfg() -> PipelineConfig:
    return PipelineConfig.load(CLUSTER)


@pytest.fixture(scope="module")
def production() -> list[Doc]:
    return documents(render(MANIFESTS / "overlays" / "production"))


@pytest.fixture(scope="module")
def level(production: list[Doc], cfg: PipelineConfig) -> str:
    """The level the pipeline's namespace enforces."""
    return enforced_level(production, cfg.kubernetes.namespace)


@pytest.fixture(scope="module")
def executors(cfg: PipelineConfig, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Doc]:
    """The compiled cluster pipeline's Kubernetes settings of each step (its executor)."""
    path = compile_pipeline(cfg, tmp_path_factory.mktemp("c") / "p.yaml")
    _, platform = yaml.safe_load_all(path.read_text())
    found: dict[str, Doc] = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    return found


@pytest.mark.parametrize("overlay", ["local", "production"])
def test_the_namespace_enforces_restricted(overlay: str, cfg: PipelineConfig) -> None:
    docs = documents(render(MANIFESTS / "overlays" / overlay))
    assert enforced_level(docs, cfg.kubernetes.namespace) == "restricted"
    (namespace,) = [d for d in docs if d["kind"] == "Namespace"]
    labels = namespace["metadata"]["labels"]
    assert (
        labels["pod-security.kubernetes.io/warn"]
        == labels["pod-security.kubernetes.io/audit"]
        == "restricted"
    )


@pytest.mark.parametrize("target", ["overlays/local", "overlays/production", "gitops"])
def test_the_platforms_pods_pass(target: str, level: str) -> None:
    problems = pod_security_level_violations(documents(render(MANIFESTS / target)), level)
    assert problems == [], "\n".join(problems)


def test_every_step_runs_as_the_images_non_root_user(executors: dict[str, Doc]) -> None:
    """Each step's container declares the user the images run as (images/*.Dockerfile: USER 10001), which
    restricted requires be non-root; KFP's driver puts it on the container."""
    for name, executor in executors.items():
        context = executor.get("securityContext") or {}
        assert context.get("runAsNonRoot") is True, name
        assert int(context.get("runAsUser", 0)) == int(context.get("runAsGroup", 0)) == RUN_AS_USER, name


def test_the_step_pods_pass(executors: dict[str, Doc], level: str) -> None:
    """The pods of every step (the train steps, the evaluate steps on a GPU with a /dev/shm volume, the
    gates, ingest, promotion, the exit handler), and the drivers KFP runs before them."""
    problems = [
        p
        for name, executor in executors.items()
        for p in pod_security_level_problems(name, step_pod(executor), level)
    ]
    problems += pod_security_level_problems("driver", driver_pod(), level)
    assert problems == [], "\n".join(problems)
    assert any(
        v.get("emptyDir") is not None and v["name"] == "dshm"
        for v in step_pod(executors["exec-evaluate-stage"])["volumes"]
    )


@pytest.mark.parametrize("job_of", JOBS, ids="-".join)
def test_the_training_pods_pass(job_of: tuple[str, str], level: str) -> None:
    example, stage = job_of
    problems = pod_security_level_violations(
        [volcano_job(PipelineConfig.load(CONFIGS / example), stage)], level
    )
    assert problems == [], "\n".join(problems)


# -- the checker refuses what admission refuses -------------------------------------------------------

RESTRICTED_POD: Doc = {
    "securityContext": {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    },
    "containers": [
        {
            "name": "main",
            "ports": [{"containerPort": 9400}],
            "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
        }
    ],
    "volumes": [
        {"name": "dshm", "emptyDir": {"medium": "Memory"}},
        {"name": "config", "configMap": {"name": "c"}},
    ],
}


def _main(pod: Doc) -> Doc:
    context: Doc = pod["containers"][0]["securityContext"]
    return context


# (id, the lowest level that refuses it, mutation, the problem named)
BROKEN: list[tuple[str, str, Any, str]] = [
    ("privileged", "baseline",
     lambda p: _main(p).update(privileged=True), "main: privileged"),
    ("host-network", "baseline",
     lambda p: p.update(hostNetwork=True), "hostNetwork is true"),
    ("host-path", "baseline",
     lambda p: p["volumes"].append({"name": "h", "hostPath": {"path": "/"}}), "h is a hostPath"),
    ("host-port", "baseline",
     lambda p: p["containers"][0]["ports"][0].update(hostPort=9400), "uses a hostPort"),
    ("sys-admin", "baseline",
     lambda p: _main(p)["capabilities"].update(add=["SYS_ADMIN"]), "['SYS_ADMIN']"),
    ("unconfined", "baseline",
     lambda p: _main(p).update(seccompProfile={"type": "Unconfined"}), "Unconfined"),
    ("escalation", "restricted",
     lambda p: _main(p).pop("allowPrivilegeEscalation"), "allowPrivilegeEscalation is not false"),
    ("root-allowed", "restricted",
     lambda p: p["securityContext"].pop("runAsNonRoot"), "runAsNonRoot is not true"),
    ("root-in-container", "restricted",
     lambda p: _main(p).update(runAsNonRoot=False), "runAsNonRoot is not true"),
    ("uid-0", "restricted",
     lambda p: _main(p).update(runAsUser=0), "main: runAsUser is 0"),
    ("no-seccomp", "restricted",
     lambda p: p["securityContext"].pop("seccompProfile"), "seccompProfile is not"),
    ("capabilities-kept", "restricted",
     lambda p: _main(p).pop("capabilities"), "drop lacks ALL"),
    ("chown-added", "restricted",
     lambda p: _main(p)["capabilities"].update(add=["CHOWN"]), "other than NET_BIND_SERVICE"),
    ("nfs-volume", "restricted",
     lambda p: p["volumes"].append({"name": "n", "nfs": {"server": "s", "path": "/"}}), "['nfs']"),
    ("init-container", "restricted",
     lambda p: p.update(initContainers=[{"name": "setup"}]), "setup: allowPrivilegeEscalation"),
]  # fmt: skip


def test_the_checker_admits_a_restricted_pod() -> None:
    for level in ("privileged", "baseline", "restricted"):
        assert pod_security_level_problems("pod", RESTRICTED_POD, level) == []
    seccomp_per_container = copy.deepcopy(RESTRICTED_POD)
    seccomp_per_container["securityContext"].pop("seccompProfile")
    _main(seccomp_per_container)["seccompProfile"] = {"type": "Localhost", "localhostProfile": "p.json"}
    assert pod_security_level_problems("pod", seccomp_per_container, "restricted") == []


@pytest.mark.parametrize(("refused_at", "mutate", "problem"), [pytest.param(*c[1:], id=c[0]) for c in BROKEN])
def test_the_checker_refuses_what_admission_refuses(refused_at: str, mutate: Any, problem: str) -> None:
    pod = copy.deepcopy(RESTRICTED_POD)
    mutate(pod)
    for level in ("baseline", "restricted"):
        found = pod_security_level_problems("Pod sam3/p: spec", pod, level)
        if level == "restricted" or refused_at == "baseline":
            assert any(problem in f and f.startswith("Pod sam3/p: spec: ") for f in found), (level, found)
        else:
            assert found == [], (level, found)
    assert pod_security_level_problems("pod", pod, "privileged") == []
