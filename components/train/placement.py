"""Where a stage's ranks run on Kubernetes, and the Volcano job patch that puts them there.

TorchX's kubernetes scheduler builds the Volcano Job from the AppDef (image,
command, CPU/memory/GPU, /dev/shm); it knows nothing of Secrets, tolerations
or our labels. ``patch_job`` adds them to the dry-run request before it is
scheduled: a restricted security context (non-root, no privilege escalation,
no capabilities), S3 credentials as ``secretKeyRef`` environment variables (the
value never enters the spec), node selectors (including the accelerator
type), tolerations, the /dev/shm size, image pull secrets (TorchX has no option for them), and labels
that monitoring selects on.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from components.images import TRAINER_IMAGE

ACCELERATOR_LABEL = "nvidia.com/gpu.product"
SCHEDULE_TIMEOUT_S = 3600.0  # the hour pipeline.dag.train_retry_window allows for queueing and start-up
_DNS_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"


def _secret_name(name: str) -> str:
    if len(name) > 253 or not re.fullmatch(_DNS_SUBDOMAIN, name):
        raise ValueError(f"{name!r} is not a Secret name (lowercase letters, digits, '-' and '.')")
    return name


SecretName = Annotated[str, AfterValidator(_secret_name)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Toleration(_Model):
    key: str
    operator: Literal["Equal", "Exists"] = "Equal"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None


class Resources(_Model):
    """Where a stage's processes run. Locally only nnodes x nproc matter."""

    nnodes: int = Field(default=1, ge=1)
    nproc: int = Field(default=1, ge=1, description="processes per node (one per GPU on a GPU node)")
    gpus: int = Field(default=0, ge=0, description="GPUs per node")
    accelerator: str | None = Field(default=None, description=f"node label {ACCELERATOR_LABEL} to require")
    cpu: int = Field(default=2, ge=1)
    memory_gb: int = Field(default=8, ge=1)
    shm_gb: int = Field(default=0, ge=0, description="/dev/shm size limit (0: no limit)")
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> Resources:
        if self.gpus and self.nproc > self.gpus:
            raise ValueError(f"nproc {self.nproc} exceeds the {self.gpus} GPUs per node")
        if self.accelerator and not self.gpus:
            raise ValueError("accelerator is set but gpus is 0")
        return self

    def selector(self) -> dict[str, str]:
        extra = {ACCELERATOR_LABEL: self.accelerator} if self.accelerator else {}
        return {**self.node_selector, **extra}


class Cluster(_Model):
    """The cluster side of a training job (ignored by local_cwd)."""

    namespace: str = "sam3"
    queue: str = "sam3"
    service_account: str = "sam3-trainer"
    priority_class: str = "sam3-training"
    s3_secret: str = Field(default="sam3-s3", description="Secret holding keys access-key and secret-key")
    s3_endpoint: str = "minio.sam3.svc:9000"
    s3_bucket: str = "sam3"
    s3_secure: bool = False
    trainer_image: str = TRAINER_IMAGE
    image_pull_secrets: list[SecretName] = Field(
        default_factory=list, description="Secrets of type kubernetes.io/dockerconfigjson in namespace"
    )
    schedule_timeout_s: float = Field(
        default=SCHEDULE_TIMEOUT_S,
        gt=0,
        description="how long a training job may wait to be scheduled (all its pods placed) before its "
        "step fails and the job is deleted",
    )

    def to_json(self) -> str:
        """The form a train step gets: pull secrets and the schedule timeout only when they are set, so
        that a config without them compiles as before and older step images (which know no such fields)
        still read it."""
        exclude = set()
        if not self.image_pull_secrets:
            exclude.add("image_pull_secrets")
        if self.schedule_timeout_s == SCHEDULE_TIMEOUT_S:
            exclude.add("schedule_timeout_s")
        return self.model_dump_json(exclude=exclude or None)

    def plain_env(self) -> dict[str, str]:
        return {
            "SAM3_S3_ENDPOINT": self.s3_endpoint,
            "SAM3_S3_BUCKET": self.s3_bucket,
            "SAM3_S3_SECURE": str(self.s3_secure).lower(),
        }


RUN_AS_USER = 10001  # the images' non-root user
SECRET_ENV = {"SAM3_S3_ACCESS_KEY": "access-key", "SAM3_S3_SECRET_KEY": "secret-key"}
RESTART_EVENTS = ("PodEvicted", "PodFailed")  # a pod lost, a pod whose torchrun gave up


def restart_policy(max_restarts: int) -> dict[str, Any]:
    """The Volcano Job fields that restart the whole job when one of its pods is lost or fails, at most
    ``max_restarts`` times. Volcano fails a restarting job once its retry count reaches ``maxRetry``,
    counting the restart that is starting, so ``maxRetry`` is one more than the restarts allowed (and
    never 0, which Volcano's admission replaces by its default, 3)."""
    return {
        "maxRetry": max_restarts + 1,
        "policies": [{"event": event, "action": "RestartJob"} for event in RESTART_EVENTS],
    }


def patch_job(
    job: dict[str, Any],
    resources: Resources,
    cluster: Cluster,
    labels: dict[str, str],
    *,
    max_restarts: int,
) -> None:
    """Add secrets by reference, placement and labels to every task of a TorchX Volcano Job, and the job's
    restart policy (``restart_policy``), in place."""
    from kubernetes.client import (
        V1Capabilities,
        V1EnvVar,
        V1EnvVarSource,
        V1LocalObjectReference,
        V1PodSecurityContext,
        V1SeccompProfile,
        V1SecretKeySelector,
        V1SecurityContext,
        V1Toleration,
    )

    job["metadata"].setdefault("labels", {}).update(labels)
    job["spec"].update(restart_policy(max_restarts))
    for task in job["spec"]["tasks"]:
        # the job's policies decide; a task's own (TorchX sets them only for AppDef retries) would differ
        task.pop("policies", None)
        task.pop("maxRetry", None)
        pod = task["template"]
        pod.metadata.labels = {**(pod.metadata.labels or {}), **labels}
        spec = pod.spec
        spec.node_selector = {**(spec.node_selector or {}), **resources.selector()}
        spec.tolerations = (spec.tolerations or []) + [
            V1Toleration(key=t.key, operator=t.operator, value=t.value, effect=t.effect)
            for t in resources.tolerations
        ]
        for volume in spec.volumes or []:
            if volume.name == "dshm" and volume.empty_dir is not None and resources.shm_gb:
                volume.empty_dir.size_limit = f"{resources.shm_gb}Gi"
        spec.security_context = V1PodSecurityContext(
            run_as_non_root=True,
            run_as_user=RUN_AS_USER,
            seccomp_profile=V1SeccompProfile(type="RuntimeDefault"),
        )
        if cluster.image_pull_secrets:
            spec.image_pull_secrets = [V1LocalObjectReference(name=s) for s in cluster.image_pull_secrets]
        for container in spec.containers:
            container.security_context = V1SecurityContext(
                allow_privilege_escalation=False, capabilities=V1Capabilities(drop=["ALL"])
            )
            env = list(container.env or [])
            env += [V1EnvVar(name=k, value=v) for k, v in cluster.plain_env().items()]
            env += [
                V1EnvVar(
                    name=name,
                    value_from=V1EnvVarSource(
                        secret_key_ref=V1SecretKeySelector(name=cluster.s3_secret, key=key)
                    ),
                )
                for name, key in SECRET_ENV.items()
            ]
            container.env = env
