"""The compiled pipeline (no KFP backend here: the YAML is checked offline, as a cluster would read it)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from components.images import package_version
from pipeline.config import CONFIGS, PipelineConfig
from pipeline.submit import compile_pipeline, name_filter, run_name

COMPILED = Path(__file__).resolve().parents[2] / "sam3_training_pipeline.yaml"


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict]:  # type: ignore[type-arg]
    mp = pytest.MonkeyPatch()
    # secrets in the compiling process's environment must not leak into the pipeline
    mp.setenv("SAM3_S3_ACCESS_KEY", "leak-check-access-8d1f")
    mp.setenv("SAM3_S3_SECRET_KEY", "leak-check-secret-5e2a")
    try:
        path = compile_pipeline(
            PipelineConfig.load(CONFIGS / "cluster.yaml"), tmp_path_factory.mktemp("c") / "p.yaml"
        )
    finally:
        mp.undo()
    text = path.read_text()
    spec, platform = yaml.safe_load_all(text)  # the pipeline spec, then its Kubernetes platform spec
    return text, {**spec, "platforms": platform["platforms"]}


def test_repository_copy_is_fresh(compiled: tuple[str, dict]) -> None:  # type: ignore[type-arg]
    assert COMPILED.read_text() == compiled[0], (
        "sam3_training_pipeline.yaml is stale: run `sam3-pipeline compile --out sam3_training_pipeline.yaml`"
    )


def test_loads_with_kfp() -> None:
    from kfp import components

    pipeline = components.load_component_from_file(str(COMPILED))
    assert pipeline.name == "sam3-training-pipeline"


def test_no_secret_value_anywhere(compiled: tuple[str, dict]) -> None:  # type: ignore[type-arg]
    text, _ = compiled
    assert "leak-check-access-8d1f" not in text and "leak-check-secret-5e2a" not in text


def test_every_step_has_image_resources_secret_reference_and_retries(compiled: tuple[str, dict]) -> None:  # type: ignore[type-arg]
    _, spec = compiled
    cfg = PipelineConfig.load(CONFIGS / "cluster.yaml")
    executors = spec["deploymentSpec"]["executors"]
    platform = spec["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert set(platform) == set(executors)
    version = package_version()
    for name, executor in executors.items():
        container = executor["container"]
        kind = "trainer" if name.startswith("exec-evaluate-stage") else "component"
        assert container["image"] == f"ghcr.io/sam3-pipeline/{kind}:{version}", name
        assert container["resources"]["cpuLimit"] and container["resources"]["memoryLimit"], name
        env = {e["name"]: e["value"] for e in container.get("env", [])}
        assert env["SAM3_S3_ENDPOINT"] == cfg.kubernetes.s3_endpoint and "SAM3_S3_SECRET_KEY" not in env
        (secret,) = platform[name]["secretAsEnv"]
        assert secret["secretName"] == cfg.kubernetes.s3_secret
        assert {k["envVar"]: k["secretKey"] for k in secret["keyToEnv"]} == {
            "SAM3_S3_ACCESS_KEY": "access-key",
            "SAM3_S3_SECRET_KEY": "secret-key",
        }
    evaluate = executors["exec-evaluate-stage"]["container"]["resources"]
    assert evaluate["accelerator"]["resourceCount"] == "1"
    assert (
        platform["exec-evaluate-stage"]["nodeSelector"]["labels"]["nvidia.com/gpu.product"] == "NVIDIA-H200"
    )
    assert platform["exec-evaluate-stage"]["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert platform["exec-evaluate-stage"]["emptyDirMounts"][0]["mountPath"] == "/dev/shm"
    tasks = _all_tasks(spec)
    assert {"train-stage", "train-stage-2", "gate-stage", "gate-stage-2", "promote-model"} <= set(tasks)
    for name, task in tasks.items():
        if "componentRef" in task and not task["componentRef"]["name"].startswith("comp-condition"):
            if task["componentRef"]["name"].startswith(("comp-exit-handler", "comp-for-loop")):
                continue
            assert task["retryPolicy"]["maxRetryCount"] == cfg.kubernetes.step_retries, name


def test_gates_guard_the_next_stage_and_promotion(compiled: tuple[str, dict]) -> None:  # type: ignore[type-arg]
    _, spec = compiled
    conditions = [
        t["triggerPolicy"]["condition"]
        for t in _all_tasks(spec).values()
        if "condition" in t.get("triggerPolicy", {})
    ]
    assert len(conditions) == 4 and all("gate-stage" in c and "== true" in c for c in conditions)  # 4 stages
    assert (
        spec["root"]["dag"]["tasks"]["report-outcome"]["triggerPolicy"]["strategy"]
        == "ALL_UPSTREAM_TASKS_COMPLETED"
    )


def test_run_name_is_the_config_hash() -> None:
    cfg = PipelineConfig.load(CONFIGS / "cluster.yaml")
    assert run_name(cfg) == run_name(PipelineConfig.load(CONFIGS / "cluster.yaml"))
    doc = cfg.model_dump(mode="json")
    doc["presence"]["steps"] += 1
    assert run_name(PipelineConfig.model_validate(doc)) != run_name(cfg)
    assert run_name(cfg) in name_filter(run_name(cfg))


def _all_tasks(spec: dict) -> dict:  # type: ignore[type-arg]
    tasks = dict(spec["root"]["dag"]["tasks"])
    for component in spec["components"].values():
        tasks.update(component.get("dag", {}).get("tasks", {}))
    return tasks


def test_submit_names_an_unreachable_host_and_refuses_a_laptop_config(repo_root: Path) -> None:
    import subprocess
    import sys

    def submit(config: str, host: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "pipeline", "submit", "--host", host, "--config", config]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=repo_root)

    down = submit("pipeline/configs/cluster.yaml", "http://127.0.0.1:9")  # nothing listens on port 9
    assert down.returncode == 1 and "KFP at http://127.0.0.1:9" in down.stderr
    laptop = submit("pipeline/configs/local.yaml", "http://127.0.0.1:9")
    assert laptop.returncode == 2 and "scheduler: kubernetes" in laptop.stderr
