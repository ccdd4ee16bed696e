"""The DAG ``sam3-training-pipeline``, built from a PipelineConfig.

    prepare sources -> ingest (ParallelFor over partitions) -> commit
      -> hard negatives
      -> [if the config has a base] resolve base -> evaluate base (the same gold set and evaluate step);
         the first stage starts from it, every gate and report sees its scores
      -> [if configured] pretrain (scores the gold set as it trains) -> evaluate -> gate
      -> [if passed] detector (from the pretrain checkpoint's backbone) -> evaluate -> gate
      -> [if passed] presence -> evaluate -> gate
      -> [if passed, and configured] tracker -> evaluate -> gate -> joint -> evaluate -> gate
      -> [if passed] promote
    exit handler: report the outcome (whatever happened)

Each step is a thin KFP component over library code (follow the imports below
to reach it). The configuration is compiled in: step inputs are its sections
as JSON, and for ``target="kubernetes"`` the pods get their images (``kubernetes.images``) and pull
secrets, a non-root security context (Pod Security ``restricted``), their namespace and service
account beside the config's (the first step checks them: ``components.identity``), the S3 Secret by
reference, the Pushgateway's URL (``kubernetes.pushgateway_url``), resources, GPU, node selectors,
tolerations, /dev/shm and retries from it (a train step stays retryable for as long as its stage may
train: ``train_retry_window``). The local runner gets the same DAG without the cluster settings (it
would apply their environment variables to the laptop's processes).
"""

from __future__ import annotations

import contextlib
import json
import math
from typing import Any, Literal

from kfp import dsl

from components.evaluate.component import evaluate_stage
from components.gate.component import gate_stage
from components.identity import (
    NAMESPACE_ENV,
    POD_NAMESPACE_ENV,
    POD_SERVICE_ACCOUNT_ENV,
    SERVICE_ACCOUNT_ENV,
)
from components.images import COMPONENT_IMAGE, TRAINER_IMAGE, Kind
from components.ingest.component import commit_datasets, ingest_partition, prepare_sources
from components.negatives.component import mine_hard_negatives
from components.promote.base import BASE_STAGE
from components.promote.component import promote_model, resolve_base
from components.report.component import report_outcome
from components.telemetry import PUSHGATEWAY_ENV
from components.train.component import train_stage
from components.train.config import ALIGN_STAGE
from components.train.placement import RUN_AS_USER, SECRET_ENV, Resources
from pipeline.config import PROBED_STAGE, PipelineConfig, Stage

PIPELINE_NAME = "sam3-training-pipeline"
STEP_POD = Resources(cpu=1, memory_gb=2)  # a step's pod unless the config sizes it (train, evaluate)
Target = Literal["local", "kubernetes"]
UNSET_DATASET = "s3://unset/datasets/pending/0"  # replaced by the upstream step's output at run time


def build_pipeline(cfg: PipelineConfig, target: Target = "kubernetes") -> Any:
    """The pipeline function (a kfp GraphComponent) for this config."""
    run_id = cfg.effective_run_id()
    data = cfg.data.model_dump_json()
    cluster = cfg.kubernetes.cluster().to_json()
    k8s = target == "kubernetes"
    stages = cfg.stages()

    def place(
        task: Any,
        resources: Resources | None = None,
        *,
        cache: bool = True,
        retry_window_s: int = RETRY_WINDOW_S,
    ) -> Any:
        task.set_caching_options(cache)
        if k8s:
            _on_kubernetes(task, cfg, resources or STEP_POD, retry_window_s)
        return task

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="SAM 3-style concept segmentation: ingest, hard negatives, pretrain, detector, presence, "
        "tracker and joint stages (TorchX), cgF1 gates, promotion into the model registry.",
    )
    def sam3_training_pipeline():  # no return annotation: kfp would read it as outputs
        execution = dsl.PIPELINE_JOB_ID_PLACEHOLDER
        report = place(report_outcome(run_id=run_id, execution=execution, stages=stages), cache=False)
        with dsl.ExitHandler(report, name="train-gate-promote"):
            sources = place(prepare_sources(data=data))
            with dsl.ParallelFor(sources.output, parallelism=cfg.data.partitions, name="ingest") as part:
                ingested = place(ingest_partition(data=data, partition=part), Resources(cpu=2, memory_gb=4))
            datasets = place(commit_datasets(data=data).after(ingested))
            mined = place(mine_hard_negatives(data=data, dataset=datasets.outputs["train"]))
            init: Any = ""  # the first stage's start: scratch, or the base
            base_metrics: Any = ""
            if cfg.base is not None:
                size = cfg.stage(stages[0]).size
                resolved = place(
                    resolve_base(
                        run_id=run_id, execution=execution, base=cfg.base.model_dump_json(), size=size
                    ),
                    cache=False,  # an alias may have moved since the last run
                )
                base_eval = place(
                    evaluate_stage(
                        stage=BASE_STAGE,
                        run_id=run_id,
                        checkpoint=resolved.output,
                        gold=datasets.outputs["gold"],
                        data=data,
                        max_images=cfg.evaluation.max_images or 0,
                        examples=cfg.evaluation.report_examples,
                        size=size,
                        base_metrics="",
                    ).set_display_name("evaluate base"),
                    cfg.kubernetes.evaluate,
                )
                init, base_metrics = resolved.output, base_eval.outputs["Output"]
            with contextlib.ExitStack() as gates:
                for name in stages:
                    stage = cfg.stage(name)
                    template = cfg.train_config(name, UNSET_DATASET, run_id=run_id).model_dump(
                        exclude={"dataset", "init", "eval_dataset"}
                    )
                    trained = place(
                        train_stage(
                            train_config=json.dumps(template),
                            dataset=mined.output,
                            init=init,
                            eval_dataset=datasets.outputs["gold"] if name == ALIGN_STAGE else "",
                            resources=stage.resources.model_dump_json(),
                            cluster=cluster,
                            scheduler=cfg.scheduler,
                            max_restarts=stage.max_restarts,
                        ).set_display_name(f"train {name}"),
                        retry_window_s=train_retry_window(stage, cfg.kubernetes.step_retries),
                    )
                    evaluated = place(
                        evaluate_stage(
                            stage=name,
                            run_id=run_id,
                            checkpoint=trained.outputs["checkpoint"],
                            gold=datasets.outputs["gold"],
                            data=data,
                            max_images=cfg.evaluation.max_images or 0,
                            examples=cfg.evaluation.report_examples,
                            size="",
                            base_metrics=base_metrics,
                            probes=json.dumps(
                                [p.model_dump() for p in cfg.evaluation.probes()]
                                if name == PROBED_STAGE
                                else []
                            ),
                        ).set_display_name(f"evaluate {name}"),
                        cfg.kubernetes.evaluate,
                    )
                    gated = place(
                        gate_stage(
                            stage=name,
                            run_id=run_id,
                            execution=execution,
                            metrics_uri=evaluated.outputs["Output"],
                            gate=stage.gate.model_dump_json(),
                            model=cfg.registry.model,
                            base_metrics=base_metrics,
                        ).set_display_name(f"gate {name}"),
                        cache=False,
                    )
                    gates.enter_context(dsl.If(gated.outputs["Output"] == True, name=f"{name}-passed"))  # noqa: E712
                    init = trained.outputs["checkpoint"]
                place(
                    promote_model(
                        run_id=run_id,
                        execution=execution,
                        checkpoint=init,
                        model=cfg.registry.model,
                        alias=cfg.registry.alias,
                        stages=stages,
                        train_dataset=mined.output,
                        gold_dataset=datasets.outputs["gold"],
                        config=cfg.to_json(),
                    ),
                    # the default pod at any model size: the registry hashes the weights in chunks and
                    # copies them on the server (3.4 GB for the full model, never in this pod's memory)
                    STEP_POD,
                    cache=False,
                )

    return sam3_training_pipeline


BACKOFF_S = 30  # the wait before a step's first retry, doubled before each further one
BACKOFF_FACTOR = 2.0
RETRY_WINDOW_S = 3600
"""How long after a step's first attempt started it may still be retried, for every step but the train
steps (KFP's default). It becomes Argo's backoff ``maxDuration``: a step that fails later is not retried,
and a retried pod is stopped at that deadline."""
START_ALLOWANCE_S = 3600
"""Per attempt of a train step, beyond its training: Volcano queueing, image pulls, rendezvous."""


def train_retry_window(stage: Stage, retries: int) -> int:
    """Seconds after a train step's first attempt started that it may still be retried: every attempt
    (``retries + 1``) may take the whole stage (``steps x step_seconds``) plus the start allowance, and
    the backoffs come between them. (A retried attempt mostly watches the same job, or resumes it from
    its last checkpoint: this bounds the worst case.)"""
    attempt = stage.steps * stage.step_seconds + START_ALLOWANCE_S
    backoffs = sum(BACKOFF_S * BACKOFF_FACTOR**i for i in range(retries))
    return math.ceil((retries + 1) * attempt + backoffs)


STEP_IMAGES: dict[str, Kind] = {COMPONENT_IMAGE: "component", TRAINER_IMAGE: "trainer"}
"""The image a component declares (its ``base_image``) -> which of the project's images it is."""


def _on_kubernetes(task: Any, cfg: PipelineConfig, resources: Resources, retry_window_s: int) -> None:
    """Cluster settings of one step's pod: image and pull secrets, its user, its namespace and service
    account beside the config's, S3 env (secret by reference), the Pushgateway's URL, resources,
    placement, retries."""
    from kfp import kubernetes

    k = cfg.kubernetes
    task.set_container_image(k.images.ref(STEP_IMAGES[task.container_spec.image]))
    # The step's container runs as the images' user, declared so that Pod Security `restricted` admits
    # the pod: the KFP backend (>= 2.16) adds the rest of what it requires (no privilege escalation, no
    # capabilities, the runtime's seccomp profile) to this container and to its own.
    kubernetes.set_security_context(
        task, run_as_user=RUN_AS_USER, run_as_group=RUN_AS_USER, run_as_non_root=True
    )
    # where the pod runs, and where the config places it: the first step stops a run created elsewhere
    # (components.identity)
    kubernetes.use_field_path_as_env(task, POD_NAMESPACE_ENV, "metadata.namespace")
    kubernetes.use_field_path_as_env(task, POD_SERVICE_ACCOUNT_ENV, "spec.serviceAccountName")
    task.set_env_variable(NAMESPACE_ENV, k.namespace)
    task.set_env_variable(SERVICE_ACCOUNT_ENV, k.pipeline_service_account)
    if k.image_pull_secrets:
        kubernetes.set_image_pull_secrets(task, k.image_pull_secrets)
    task.set_retry(
        num_retries=k.step_retries,
        backoff_duration=f"{BACKOFF_S}s",
        backoff_factor=BACKOFF_FACTOR,
        backoff_max_duration=f"{retry_window_s}s",
    )
    kubernetes.use_secret_as_env(
        task, secret_name=k.s3_secret, secret_key_to_env={key: env for env, key in SECRET_ENV.items()}
    )
    for name, value in k.cluster().plain_env().items():
        task.set_env_variable(name, value)
    if k.pushgateway_url:  # the batch steps (ingest, negatives, gates) push to it; the others ignore it
        task.set_env_variable(PUSHGATEWAY_ENV, k.pushgateway_url)
    task.set_cpu_request(str(resources.cpu)).set_cpu_limit(str(resources.cpu))
    task.set_memory_request(f"{resources.memory_gb}G").set_memory_limit(f"{resources.memory_gb}G")
    if resources.gpus:
        task.set_accelerator_limit(resources.gpus)
        task.set_accelerator_type("nvidia.com/gpu")
    for key, value in resources.selector().items():
        kubernetes.add_node_selector(task, label_key=key, label_value=value)
    for t in resources.tolerations:
        kubernetes.add_toleration(task, key=t.key, operator=t.operator, value=t.value, effect=t.effect)
    if resources.shm_gb:
        kubernetes.empty_dir_mount(
            task,
            volume_name="dshm",
            mount_path="/dev/shm",
            medium="Memory",
            size_limit=f"{resources.shm_gb}Gi",
        )
