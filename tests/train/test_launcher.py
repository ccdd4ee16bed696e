"""The stage AppDef and its dry runs (no cluster here: the Volcano job is checked offline)."""

from __future__ import annotations

import pytest
import yaml

from components.errors import ConfigError
from components.train.config import TrainConfig
from components.train.job import dryrun
from components.train.launcher import Topology, stage_app
from components.train.placement import Cluster, Resources, Toleration

CFG = TrainConfig(stage="detector", dataset="s3://sam3/datasets/shapes/abc", run_id="run-1", steps=5)


def test_appdef_runs_the_trainer_under_torchrun_with_restarts() -> None:
    app = stage_app(CFG, Topology(nnodes=1, nproc=2, max_restarts=2))
    role = app.roles[0]
    assert role.entrypoint == "bash" and role.args[0] == "-c"
    command = role.args[1]
    assert command.startswith("torchrun --max-restarts 2 ")
    assert "--nproc_per_node 2" in command and "-m components.train.main --config-json" in command
    assert TrainConfig.model_validate_json(command.split("--config-json ", 1)[1].strip("'")) == CFG
    assert not [k for k in role.env if k.startswith("SAM3_S3_")]


def test_secrets_are_refused_in_the_job_spec() -> None:
    with pytest.raises(ConfigError, match="secrets"):
        stage_app(CFG, Topology(env={"SAM3_S3_SECRET_KEY": "x"}))


def test_kubernetes_dryrun_is_a_gang_scheduled_volcano_job() -> None:
    resources = Resources(
        nnodes=2,
        nproc=8,
        gpus=8,
        accelerator="NVIDIA-H200",
        shm_gb=64,
        node_selector={"pool": "gpu"},
        tolerations=[Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")],
    )
    cluster = Cluster(queue="gpu-queue", namespace="ml", trainer_image="trainer:0.1.0", s3_secret="creds")
    text = dryrun(CFG, resources, "kubernetes", cluster=cluster)
    job = yaml.safe_load(text)
    assert job["kind"] == "Job" and job["apiVersion"] == "batch.volcano.sh/v1alpha1"
    assert job["spec"]["queue"] == "gpu-queue" and job["spec"]["schedulerName"] == "volcano"
    tasks = job["spec"]["tasks"]  # one task per node; Volcano gangs them: minAvailable sums to every node
    assert len(tasks) == 2 and sum(t["minAvailable"] for t in tasks) == sum(t["replicas"] for t in tasks) == 2
    pod = tasks[0]["template"]
    assert pod["metadata"]["labels"]["sam3.dev/stage"] == "detector"
    assert pod["metadata"]["labels"]["sam3.dev/run-id"] == "run-1"
    spec = pod["spec"]
    assert spec["nodeSelector"] == {"pool": "gpu", "nvidia.com/gpu.product": "NVIDIA-H200"}
    assert (
        spec["tolerations"][0]["key"] == "nvidia.com/gpu" and spec["tolerations"][0]["operator"] == "Exists"
    )
    assert [v["emptyDir"]["sizeLimit"] for v in spec["volumes"] if v["name"] == "dshm"] == ["64Gi"]
    container = spec["containers"][0]
    assert container["image"] == "trainer:0.1.0"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "8"
    assert "--nnodes 2 --nproc_per_node 8" in " ".join(container["command"])
    env = {e["name"]: e for e in container["env"]}
    for name, key in (("SAM3_S3_ACCESS_KEY", "access-key"), ("SAM3_S3_SECRET_KEY", "secret-key")):
        assert "value" not in env[name]  # by reference only
        assert env[name]["valueFrom"]["secretKeyRef"] == {"name": "creds", "key": key}
    assert env["SAM3_S3_ENDPOINT"]["value"] == cluster.s3_endpoint


def test_bad_topology_is_refused() -> None:
    with pytest.raises(ConfigError, match="exceeds"):
        Topology(nproc=4, gpus_per_node=2)
