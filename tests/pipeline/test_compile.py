"""The compiled pipeline (no KFP backend here: the YAML is checked offline, as a cluster would read it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from components.images import package_version
from pipeline.config import CONFIGS, PipelineConfig
from pipeline.submit import compile_pipeline, name_filter, run_name

ROOT = Path(__file__).resolve().parents[2]
SCRATCH = CONFIGS / "cluster-scratch.yaml"  # every stage, pretrain and the video stages included
# the leak check: secrets in the compiling process's environment must not reach the pipeline
LEAKS = {"SAM3_S3_ACCESS_KEY": "leak-check-access-8d1f", "SAM3_S3_SECRET_KEY": "leak-check-secret-5e2a"}


@pytest.fixture(scope="module")
def compiled_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The cluster example compiled as a user compiles it, by `sam3-pipeline compile` (not kept in git)."""
    out = tmp_path_factory.mktemp("compiled") / "sam3_training_pipeline.yaml"
    cmd = [sys.executable, "-m", "pipeline", "compile", "--config", str(CONFIGS / "cluster.yaml")]
    done = subprocess.run(
        [*cmd, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, **LEAKS},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == str(out)  # the result line is the file
    return out


@pytest.fixture(scope="module")
def compiled(compiled_file: Path) -> tuple[str, dict]:  # type: ignore[type-arg]
    text = compiled_file.read_text()
    spec, platform = yaml.safe_load_all(text)  # the pipeline spec, then its Kubernetes platform spec
    return text, {**spec, "platforms": platform["platforms"]}


def test_compiling_is_reproducible(compiled: tuple[str, dict], tmp_path: Path) -> None:  # type: ignore[type-arg]
    """The same config compiles to the same bytes, whoever compiles it, with whatever environment."""
    again = compile_pipeline(PipelineConfig.load(CONFIGS / "cluster.yaml"), tmp_path / "p.yaml")
    assert again.read_text() == compiled[0]


def test_loads_with_kfp(compiled_file: Path) -> None:
    from kfp import components

    pipeline = components.load_component_from_file(str(compiled_file))
    assert pipeline.name == "sam3-training-pipeline"


def test_every_step_of_the_dag_is_there_in_its_place(compiled: tuple[str, dict]) -> None:  # type: ignore[type-arg]
    """The exit handler holds the data steps and the first stage; each stage's train, evaluate and gate
    steps sit in the DAG that the previous stage's gate opens, and promotion in the last one's."""
    _, spec = compiled
    stages = PipelineConfig.load(CONFIGS / "cluster.yaml").stages()
    assert set(spec["root"]["dag"]["tasks"]) == {"exit-handler-1", "report-outcome"}
    dags = {  # component name -> display names of the tasks its DAG holds
        name: {task["taskInfo"]["name"]: task for task in component["dag"]["tasks"].values()}
        for name, component in spec["components"].items()
        if "dag" in component
    }
    holder = "comp-exit-handler-1"
    data_steps = {"prepare-sources", "ingest", "commit-datasets", "mine-hard-negatives"}
    assert data_steps | {"resolve-base", "evaluate base"} <= set(dags[holder])
    assert set(dags["comp-for-loop-2"]) == {"ingest-partition"}
    for stage in stages:
        steps = {f"train {stage}", f"evaluate {stage}", f"gate {stage}", f"{stage}-passed"}
        assert steps <= set(dags[holder]), (stage, holder, sorted(dags[holder]))
        holder = dags[holder][f"{stage}-passed"]["componentRef"]["name"]
    assert set(dags[holder]) == {"promote-model"}
    executors = {
        name.removeprefix("exec-").rstrip("-0123456789") for name in spec["deploymentSpec"]["executors"]
    }
    assert executors == {
        "prepare-sources",
        "ingest-partition",
        "commit-datasets",
        "mine-hard-negatives",
        "resolve-base",
        "train-stage",
        "evaluate-stage",
        "gate-stage",
        "promote-model",
        "report-outcome",
    }


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
    stages = PipelineConfig.load(CONFIGS / "cluster.yaml").stages()
    conditions = [
        t["triggerPolicy"]["condition"]
        for t in _all_tasks(spec).values()
        if "condition" in t.get("triggerPolicy", {})
    ]
    assert len(conditions) == len(stages) and all("gate-stage" in c and "== true" in c for c in conditions)
    assert (
        spec["root"]["dag"]["tasks"]["report-outcome"]["triggerPolicy"]["strategy"]
        == "ALL_UPSTREAM_TASKS_COMPLETED"
    )


# The steps that push metrics to the Pushgateway (components.telemetry): ingest and negatives count records
# and rejects (Sam3IngestRejectsHigh), the gates push their decision (Sam3GateFailed).
PUSHING_STEPS = ("exec-ingest-partition", "exec-mine-hard-negatives", "exec-gate-stage")


def _env(executor: dict) -> dict[str, str]:  # type: ignore[type-arg]
    return {e["name"]: e["value"] for e in executor["container"].get("env", [])}


def test_the_steps_that_push_metrics_know_the_pushgateway(compiled: tuple[str, dict]) -> None:  # type: ignore[type-arg]
    """Without SAM3_PUSHGATEWAY_URL in a step's pod its push is a silent no-op, and the alerts on what the
    gates and ingest push could never fire."""
    _, spec = compiled
    cfg = PipelineConfig.load(CONFIGS / "cluster.yaml")
    url = cfg.kubernetes.pushgateway_url
    assert url == "http://pushgateway.sam3.svc:9091"  # the Service manifests/base deploys
    executors = spec["deploymentSpec"]["executors"]
    pushing = [name for name in executors if name.startswith(PUSHING_STEPS)]
    assert len([n for n in pushing if n.startswith("exec-gate-stage")]) == len(cfg.stages())  # one a stage
    for name in pushing:
        assert _env(executors[name])["SAM3_PUSHGATEWAY_URL"] == url, name
    for name, executor in executors.items():  # the same pod environment on every step
        assert _env(executor).get("SAM3_PUSHGATEWAY_URL") == url, name


def test_an_empty_pushgateway_url_pushes_nothing(tmp_path: Path) -> None:
    doc = yaml.safe_load((CONFIGS / "cluster.yaml").read_text())
    doc["kubernetes"]["pushgateway_url"] = ""
    text = compile_pipeline(PipelineConfig.model_validate(doc), tmp_path / "p.yaml").read_text()
    assert "SAM3_PUSHGATEWAY_URL" not in text


def _train_tasks(spec: dict) -> dict[str, tuple[str, str, dict]]:  # type: ignore[type-arg]
    """Display name -> (task name, the component whose DAG holds it, the task) of every train step, in the
    order the DAG builds them (train-stage, train-stage-2, ...)."""
    found = [
        (name, holder, task)
        for holder, component in spec["components"].items()
        for name, task in component.get("dag", {}).get("tasks", {}).items()
        if name.startswith("train-stage")
    ]
    found.sort(key=lambda t: int(t[0].removeprefix("train-stage").lstrip("-") or 1))
    return {task["taskInfo"]["name"]: (name, holder, task) for name, holder, task in found}


def _seconds(duration: str) -> float:
    assert duration.endswith("s"), duration
    return float(duration.removesuffix("s"))


def test_a_train_step_stays_retryable_for_as_long_as_its_stage_may_train(compiled: tuple[str, dict]) -> None:  # type: ignore[type-arg]
    """Argo retries a step only within backoffMaxDuration of its first attempt's start (and stops a retried
    pod at that deadline): KFP's default of an hour would leave a train step that fails after its first
    hour unretried. Each train step's window covers every attempt training the whole stage."""
    _, spec = compiled
    cfg = PipelineConfig.load(CONFIGS / "cluster.yaml")
    retries = cfg.kubernetes.step_retries
    trains = _train_tasks(spec)
    assert list(trains) == [f"train {s}" for s in cfg.stages()]
    windows = {}
    for display, (_, _, task) in trains.items():
        policy = task["retryPolicy"]
        assert policy["maxRetryCount"] == retries, display
        windows[display] = _seconds(policy["backoffMaxDuration"])
    stages = {display: cfg.stage(display.removeprefix("train ")) for display in trains}
    # thousands of full-model steps on 2 x 8 GPUs: hours, more than a second a step
    assert all(windows[d] > (retries + 1) * stage.steps for d, stage in stages.items()), windows

    from pipeline.dag import RETRY_WINDOW_S, train_retry_window

    for display, stage in stages.items():
        assert windows[display] == train_retry_window(stage, retries), display
        assert windows[display] >= (retries + 1) * stage.steps * stage.step_seconds, display
    others = [
        task["retryPolicy"]
        for name, task in _all_tasks(spec).items()
        if "retryPolicy" in task and not name.startswith("train-stage")
    ]
    assert others and all(_seconds(p["backoffMaxDuration"]) == RETRY_WINDOW_S for p in others), others


def test_the_retry_window_follows_the_stage() -> None:
    from pipeline.config import Stage
    from pipeline.dag import RETRY_WINDOW_S, train_retry_window

    short = Stage(steps=10, step_seconds=1.0)
    assert train_retry_window(short, 0) >= RETRY_WINDOW_S  # never below the other steps' window
    assert train_retry_window(short, 2) == 3 * (10 + 3600) + 30 + 60  # 3 attempts, 2 backoffs between
    long = Stage(steps=20000, step_seconds=5.0)
    assert train_retry_window(long, 2) > train_retry_window(long, 1) > 2 * 20000 * 5.0
    assert train_retry_window(long.model_copy(update={"steps": 40000}), 2) > train_retry_window(long, 2)
    assert train_retry_window(long.model_copy(update={"step_seconds": 10.0}), 2) > train_retry_window(long, 2)


def _condition_of(spec: dict, holder: str) -> dict:  # type: ignore[type-arg]
    """The dsl.If task whose component is ``holder``."""
    (task,) = [t for t in _all_tasks(spec).values() if t.get("componentRef", {}).get("name") == holder]
    return task  # type: ignore[no-any-return]


def test_pretrain_trains_first_and_the_detector_starts_from_it(tmp_path: Path) -> None:
    text = compile_pipeline(PipelineConfig.load(SCRATCH), tmp_path / "p.yaml").read_text()
    spec = next(yaml.safe_load_all(text))
    trains = _train_tasks(spec)
    assert list(trains) == [f"train {s}" for s in ("pretrain", "detector", "presence", "tracker", "joint")]
    name, holder, pretrain = trains["train pretrain"]
    assert holder == "comp-exit-handler-1"  # behind no gate: it trains as soon as the data is mined
    params = pretrain["inputs"]["parameters"]
    assert params["init"] == {"runtimeValue": {"constant": ""}}  # the first stage starts from scratch
    assert params["eval_dataset"]["taskOutputParameter"] == {
        "outputParameterKey": "gold",
        "producerTask": "commit-datasets",
    }
    _, holder, detector = trains["train detector"]
    channel = detector["inputs"]["parameters"]["init"]["componentInputParameter"]
    guard = _condition_of(spec, holder)  # the pretrain gate's dsl.If hands the detector its checkpoint
    assert guard["taskInfo"]["name"] == "pretrain-passed"
    assert guard["inputs"]["parameters"][channel]["taskOutputParameter"] == {
        "outputParameterKey": "checkpoint",
        "producerTask": name,
    }
    assert detector["inputs"]["parameters"]["eval_dataset"] == {"runtimeValue": {"constant": ""}}
    train_config = json.loads(params["train_config"]["runtimeValue"]["constant"])
    assert train_config["stage"] == "pretrain" and "eval_dataset" not in train_config  # set at run time


def test_a_config_without_pretrain_compiles_as_before(tmp_path: Path) -> None:
    doc = yaml.safe_load(SCRATCH.read_text())
    del doc["pretrain"]
    text = compile_pipeline(PipelineConfig.model_validate(doc), tmp_path / "p.yaml").read_text()
    spec = next(yaml.safe_load_all(text))
    trains = _train_tasks(spec)
    assert list(trains) == [f"train {s}" for s in ("detector", "presence", "tracker", "joint")]
    _, _, detector = trains["train detector"]
    assert detector["inputs"]["parameters"]["init"] == {"runtimeValue": {"constant": ""}}
    conditions = [t for t in _all_tasks(spec).values() if "condition" in t.get("triggerPolicy", {})]
    assert sorted(t["taskInfo"]["name"] for t in conditions) == sorted(
        f"{s}-passed" for s in ("detector", "presence", "tracker", "joint")
    )


COMPONENT_DIGEST = "sha256:" + "c0" * 32
TRAINER_DIGEST = "sha256:" + "7e" * 32


def test_images_and_pull_secrets_come_from_the_config(tmp_path: Path) -> None:
    """Another registry, images pinned by digest and a pull secret reach every step's pod, and the train
    steps hand them on to the training job (the Volcano job TorchX would submit from the step's input)."""
    from components.train.config import TrainConfig
    from components.train.job import dryrun
    from components.train.placement import Cluster

    doc = yaml.safe_load((CONFIGS / "cluster.yaml").read_text())
    doc["kubernetes"]["images"] = {
        "registry": "registry.example.com:5000/ml/sam3",
        "digests": {"component": COMPONENT_DIGEST, "trainer": TRAINER_DIGEST},
    }
    doc["kubernetes"]["image_pull_secrets"] = ["regcred", "mirror.pull"]
    text = compile_pipeline(PipelineConfig.model_validate(doc), tmp_path / "p.yaml").read_text()
    assert "ghcr.io" not in text
    spec, platform = yaml.safe_load_all(text)
    executors = spec["deploymentSpec"]["executors"]
    pods = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for name, executor in executors.items():
        kind, digest = (
            ("trainer", TRAINER_DIGEST)
            if name.startswith("exec-evaluate-stage")
            else ("component", COMPONENT_DIGEST)
        )
        assert executor["container"]["image"] == f"registry.example.com:5000/ml/sam3/{kind}@{digest}", name
        assert [s["secretName"] for s in pods[name]["imagePullSecret"]] == ["regcred", "mirror.pull"], name
    trains = _train_tasks(spec)
    assert trains
    for display, (_, _, task) in trains.items():
        params = task["inputs"]["parameters"]
        cluster = Cluster.model_validate_json(params["cluster"]["runtimeValue"]["constant"])
        assert cluster.trainer_image == f"registry.example.com:5000/ml/sam3/trainer@{TRAINER_DIGEST}", display
        assert cluster.image_pull_secrets == ["regcred", "mirror.pull"], display
    _, _, detector = trains["train detector"]
    params = detector["inputs"]["parameters"]
    train_config = TrainConfig.model_validate(
        {
            **json.loads(params["train_config"]["runtimeValue"]["constant"]),
            "dataset": "s3://sam3/datasets/x/1",
        }
    )
    cluster = Cluster.model_validate_json(params["cluster"]["runtimeValue"]["constant"])
    stage = PipelineConfig.model_validate(doc).stage("detector")
    job = yaml.safe_load(dryrun(train_config, stage.resources, "kubernetes", cluster=cluster))
    for task in job["spec"]["tasks"]:
        pod = task["template"]["spec"]
        assert [c["image"] for c in pod["containers"]] == [cluster.trainer_image]
        assert pod["imagePullSecrets"] == [{"name": "regcred"}, {"name": "mirror.pull"}]


def test_the_default_images_compile_as_before(compiled: tuple[str, dict]) -> None:  # type: ignore[type-arg]
    """Without kubernetes.images and image_pull_secrets: the project's images tagged with the package
    version, no pull secret, and a train step input that older step images still read."""
    _, spec = compiled
    version = package_version()
    pods = spec["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert not [name for name, pod in pods.items() if "imagePullSecret" in pod]
    for _, _, task in _train_tasks(spec).values():
        cluster = json.loads(task["inputs"]["parameters"]["cluster"]["runtimeValue"]["constant"])
        assert cluster["trainer_image"] == f"ghcr.io/sam3-pipeline/trainer:{version}"
        assert "image_pull_secrets" not in cluster


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


def test_a_base_is_resolved_evaluated_and_the_first_stage_starts_from_it(tmp_path: Path) -> None:
    doc = yaml.safe_load(SCRATCH.read_text())
    del doc["pretrain"]
    doc["base"] = "sam3-full@production"
    doc["detector"]["gate"]["max_base_regression"] = 1.0
    text = compile_pipeline(PipelineConfig.model_validate(doc), tmp_path / "p.yaml").read_text()
    spec = next(yaml.safe_load_all(text))
    tasks = _all_tasks(spec)
    resolve = tasks["resolve-base"]
    assert resolve["cachingOptions"] == {}  # never cached: the alias is read when the run starts
    base = json.loads(resolve["inputs"]["parameters"]["base"]["runtimeValue"]["constant"])
    assert base["model"] == "sam3-full@production" and base["pinned"] is None
    from_base = {"taskOutputParameter": {"outputParameterKey": "Output", "producerTask": "resolve-base"}}
    (evaluate_base,) = [t for t in tasks.values() if t["taskInfo"]["name"] == "evaluate base"]
    assert evaluate_base["inputs"]["parameters"]["checkpoint"] == from_base
    assert evaluate_base["inputs"]["parameters"]["size"] == {"runtimeValue": {"constant": "full"}}
    _, _, detector = _train_tasks(spec)["train detector"]
    assert detector["inputs"]["parameters"]["init"] == from_base
    (gate,) = [t for t in tasks.values() if t["taskInfo"]["name"] == "gate detector"]
    producer = gate["inputs"]["parameters"]["base_metrics"]["taskOutputParameter"]["producerTask"]
    assert tasks[producer]["taskInfo"]["name"] == "evaluate base"


def test_the_cluster_pipeline_fine_tunes_the_imported_release(compiled: tuple[str, dict]) -> None:  # type: ignore[type-arg]
    """The cluster example as compiled: resolve-base reads the alias that docs/cluster.md has the imported
    sam3.pt promoted to, the first stage's init is what it resolved, nothing trains a pretrain stage, and
    every gate holds the stage to the base's scores on the same gold set."""
    _, spec = compiled
    cfg = PipelineConfig.load(CONFIGS / "cluster.yaml")
    assert cfg.base is not None and cfg.base.model == "sam3-full@released"
    tasks = _all_tasks(spec)
    assert not [name for name, task in tasks.items() if "pretrain" in name + task["taskInfo"]["name"]]
    trains = _train_tasks(spec)
    assert list(trains) == ["train detector", "train presence"]

    resolve = tasks["resolve-base"]
    assert resolve["cachingOptions"] == {}  # never cached: the alias is read when the run starts
    params = resolve["inputs"]["parameters"]
    base = json.loads(params["base"]["runtimeValue"]["constant"])
    assert base == {"model": "sam3-full@released", "checkpoint": None, "pinned": None}
    assert params["size"] == {"runtimeValue": {"constant": "full"}}  # the imported architecture

    from_base = {"taskOutputParameter": {"outputParameterKey": "Output", "producerTask": "resolve-base"}}
    name, holder, detector = trains["train detector"]
    assert holder == "comp-exit-handler-1" and "resolve-base" in detector["dependentTasks"]
    assert detector["inputs"]["parameters"]["init"] == from_base
    template = json.loads(detector["inputs"]["parameters"]["train_config"]["runtimeValue"]["constant"])
    assert template["optim"]["frozen"] == ["text"] and template["optim"]["lr"] <= 1e-4  # a fine-tune's
    _, holder, presence = trains["train presence"]
    channel = presence["inputs"]["parameters"]["init"]["componentInputParameter"]
    assert _condition_of(spec, holder)["inputs"]["parameters"][channel]["taskOutputParameter"] == {
        "outputParameterKey": "checkpoint",
        "producerTask": name,
    }  # the second stage starts from the first, not from the base again

    (evaluate_base,) = [t for t in tasks.values() if t["taskInfo"]["name"] == "evaluate base"]
    assert evaluate_base["inputs"]["parameters"]["checkpoint"] == from_base
    for stage in cfg.stages():
        (gate,) = [t for t in tasks.values() if t["taskInfo"]["name"] == f"gate {stage}"]
        rules = json.loads(gate["inputs"]["parameters"]["gate"]["runtimeValue"]["constant"])
        assert rules["max_base_regression"] is not None, stage
        channel = gate["inputs"]["parameters"]["base_metrics"]
        producer = channel.get("taskOutputParameter", {}).get("producerTask")
        if producer is None:  # behind a gate: handed in through the dsl.If's inputs
            guard = _condition_of(spec, _holder_of(spec, gate))
            producer = guard["inputs"]["parameters"][channel["componentInputParameter"]][
                "taskOutputParameter"
            ]["producerTask"]
        assert tasks[producer]["taskInfo"]["name"] == "evaluate base", stage


def _holder_of(spec: dict, task: dict) -> str:  # type: ignore[type-arg]
    """The component whose DAG holds ``task``."""
    (holder,) = [
        name
        for name, component in spec["components"].items()
        if any(t is task for t in component.get("dag", {}).get("tasks", {}).values())
    ]
    return holder
