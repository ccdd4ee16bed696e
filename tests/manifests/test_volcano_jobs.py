"""The Volcano jobs TorchX would submit for the cluster examples pass the Volcano Job schema and admission
checks, and fit the platform (queue, priority class, service account, queue capacity): every stage of
pipeline/configs/cluster.yaml (the fine-tune) and of cluster-scratch.yaml (the whole recipe, two-node
gangs, pretrain and the video stages).

TorchX's kubernetes scheduler serialises the Volcano Job with the Kubernetes client's
``sanitize_for_serialization``: camelCase, the form the API server takes. A snake_case field (what
``V1PodSpec.to_dict()`` would give) is an unknown field to the CRD, and is refused.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.images import image
from components.train.job import dryrun
from pipeline.config import CONFIGS, PipelineConfig
from tests.manifests.validate import (
    MANIFESTS,
    documents,
    errors,
    pod_security_problems,
    quantity,
    render,
)

CLUSTER = Path(__file__).resolve().parents[2] / "pipeline" / "configs" / "cluster.yaml"
DATASET = "s3://sam3/datasets/x/1"
EXAMPLES = ("cluster.yaml", "cluster-scratch.yaml")
JOBS = [(example, stage) for example in EXAMPLES for stage in PipelineConfig.load(CONFIGS / example).stages()]
"""(example config, stage) of every training job the two examples submit."""
Jobs = dict[tuple[str, str], dict[str, Any]]


def volcano_job(cfg: PipelineConfig, stage: str) -> dict[str, Any]:
    resources = cfg.stage(stage).resources
    text = dryrun(
        cfg.train_config(stage, DATASET),
        resources,
        "kubernetes",
        cluster=cfg.kubernetes.cluster(),
        max_restarts=cfg.stage(stage).max_restarts,
    )
    job: dict[str, Any] = yaml.safe_load(text)
    return job


@pytest.fixture(scope="module")
def examples() -> dict[str, PipelineConfig]:
    return {example: PipelineConfig.load(CONFIGS / example) for example in EXAMPLES}


@pytest.fixture(scope="module")
def jobs(examples: dict[str, PipelineConfig]) -> Jobs:
    return {(example, stage): volcano_job(examples[example], stage) for example, stage in JOBS}


@pytest.fixture(scope="module")
def production() -> list[dict[str, Any]]:
    return documents(render(MANIFESTS / "overlays" / "production"))


@pytest.mark.parametrize("job_of", JOBS, ids="-".join)
def test_the_torchx_volcano_job_is_valid(jobs: Jobs, job_of: tuple[str, str]) -> None:
    job = jobs[job_of]
    assert (job["apiVersion"], job["kind"]) == ("batch.volcano.sh/v1alpha1", "Job")
    assert errors(job) == []
    assert {c["image"] for t in job["spec"]["tasks"] for c in t["template"]["spec"]["containers"]} == {
        image("trainer")
    }


@pytest.mark.parametrize("job_of", JOBS, ids="-".join)
def test_the_job_uses_what_the_platform_provides(
    jobs: Jobs, production: list[dict[str, Any]], job_of: tuple[str, str]
) -> None:
    job = jobs[job_of]
    names = {(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]) for d in production}
    assert ("Queue", None, job["spec"]["queue"]) in names
    assert ("PriorityClass", None, job["spec"]["priorityClassName"]) in names
    for task in job["spec"]["tasks"]:
        account = task["template"]["spec"]["serviceAccountName"]
        assert ("ServiceAccount", "sam3", account) in names


@pytest.mark.parametrize("job_of", JOBS, ids="-".join)
def test_the_job_fits_the_production_queue(
    jobs: Jobs, production: list[dict[str, Any]], job_of: tuple[str, str]
) -> None:
    """Gang scheduling admits a job only if all its pods fit the queue's capability at once."""
    queue = next(d for d in production if d["kind"] == "Queue")
    capability = {k: quantity(v) for k, v in queue["spec"]["capability"].items()}
    asked: dict[str, float] = {}
    for task in jobs[job_of]["spec"]["tasks"]:
        for c in task["template"]["spec"]["containers"]:
            for resource, value in c["resources"]["requests"].items():
                asked[resource] = asked.get(resource, 0.0) + quantity(value) * task["replicas"]
    too_much = {r: (v, capability.get(r)) for r, v in asked.items() if v > capability.get(r, float("inf"))}
    assert not too_much, f"{job_of} asks for more than queue sam3 may hold: {too_much}"


@pytest.mark.parametrize(
    ("field", "problem"),
    [
        ("minAvailable", "'min_available' was unexpected"),  # snake_case is an unknown field
        ("template", "'template' is a required property"),  # a task without a pod template
    ],
)
def test_a_broken_task_is_refused(jobs: Jobs, field: str, problem: str) -> None:
    job = copy.deepcopy(jobs[("cluster.yaml", "detector")])
    task = job["spec"]["tasks"][0]
    value = task.pop(field)
    if field == "minAvailable":
        task["min_available"] = value
    found = errors(job)
    assert any(job["metadata"]["name"] in e and "spec.tasks.0" in e and problem in e for e in found), found


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (lambda t: t["template"]["spec"]["containers"][0].update(imagePullPolicy=1), "is not of type"),
        (lambda t: t.update(name="Main_0"), "does not match"),
        (lambda t: t.update(minAvailable=3), "minAvailable 3 is greater than replicas 1"),
    ],
    ids=["container-field-type", "task-name-not-dns-label", "min-available-over-replicas"],
)
def test_a_bad_task_spec_is_refused(jobs: Jobs, mutate: Any, problem: str) -> None:
    job = copy.deepcopy(jobs[("cluster.yaml", "detector")])
    mutate(job["spec"]["tasks"][0])
    found = errors(job)
    assert any(job["metadata"]["name"] in e and problem in e for e in found), found


def test_a_long_config_name_still_makes_an_acceptable_job() -> None:
    text = CLUSTER.read_text().replace("name: sam3\n", "name: sam3-segmentation-prod\n", 1)
    job = volcano_job(PipelineConfig.parse(text), "detector")
    assert errors(job) == []


def test_training_pods_are_hardened(jobs: Jobs) -> None:
    problems = pod_security_problems(list(jobs.values()))
    assert problems == [], "\n".join(problems)


def test_the_job_pulls_the_configs_trainer_image_with_its_pull_secrets() -> None:
    digest = "sha256:" + "5a" * 32
    text = CLUSTER.read_text().replace(
        "kubernetes:\n",
        "kubernetes:\n"
        "  images:\n"
        "    registry: registry.example.com/ml/sam3\n"
        f"    digests: {{component: sha256:{'c0' * 32}, trainer: {digest}}}\n"
        "  image_pull_secrets: [regcred]\n",
        1,
    )
    job = volcano_job(PipelineConfig.parse(text), "detector")
    assert errors(job) == []
    for task in job["spec"]["tasks"]:
        pod = task["template"]["spec"]
        assert [c["image"] for c in pod["containers"]] == [f"registry.example.com/ml/sam3/trainer@{digest}"]
        assert pod["imagePullSecrets"] == [{"name": "regcred"}]


def test_without_pull_secrets_the_pods_name_none(jobs: Jobs) -> None:
    """The service account's own imagePullSecrets apply only to a pod that names none."""
    assert all(
        "imagePullSecrets" not in t["template"]["spec"] for j in jobs.values() for t in j["spec"]["tasks"]
    )


@pytest.mark.parametrize("job_of", JOBS, ids="-".join)
def test_a_lost_or_failed_pod_restarts_the_whole_job_up_to_the_stages_restarts(
    examples: dict[str, PipelineConfig], jobs: Jobs, job_of: tuple[str, str]
) -> None:
    example, stage = job_of
    spec = jobs[job_of]["spec"]
    assert spec["policies"] == [
        {"event": "PodEvicted", "action": "RestartJob"},
        {"event": "PodFailed", "action": "RestartJob"},
    ]
    # Volcano fails the job when its retry count (this restart included) reaches maxRetry
    assert spec["maxRetry"] == examples[example].stage(stage).max_restarts + 1
    assert all("policies" not in t and "maxRetry" not in t for t in spec["tasks"])  # the job's decide


@pytest.mark.parametrize("max_restarts", [0, 5])
def test_the_restarts_follow_the_stage(max_restarts: int) -> None:
    cfg = PipelineConfig.load(CLUSTER)
    resources = cfg.stage("detector").resources
    job = yaml.safe_load(
        dryrun(
            cfg.train_config("detector", DATASET),
            resources,
            "kubernetes",
            cluster=cfg.kubernetes.cluster(),
            max_restarts=max_restarts,
        )
    )
    # 0 restarts: maxRetry 1, the first lost pod fails the job (0 would be read as Volcano's default, 3)
    assert job["spec"]["maxRetry"] == max_restarts + 1
    assert errors(job) == []


@pytest.mark.parametrize(
    ("policies", "problem"),
    [
        ([{"event": "PodFailed", "action": "RestartJob"}] * 2, "duplicate event PodFailed"),
        ([{"event": "PodFailed", "action": "Restart"}], "invalid policy action"),
        ([{"event": "PodGone", "action": "RestartJob"}], "is not one of"),  # the schema's enum
        ([{"event": "OutOfSync", "action": "RestartJob"}], "invalid policy event"),  # internal only
        ([{"event": "PodFailed", "exitCode": 3, "action": "RestartJob"}], "simultaneously"),
        ([{"event": "*", "action": "AbortJob"}, {"event": "PodFailed", "action": "RestartJob"}], "'*'"),
    ],
    ids=["duplicate", "action", "unknown-event", "internal-event", "event-and-exit-code", "any-and-another"],
)
def test_bad_policies_are_refused(jobs: Jobs, policies: list[dict[str, Any]], problem: str) -> None:
    job = copy.deepcopy(jobs[("cluster.yaml", "detector")])
    job["spec"]["policies"] = policies
    found = errors(job)
    assert any("spec.policies" in e and problem in e for e in found), found
