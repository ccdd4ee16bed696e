"""The pipeline configuration: one pydantic model, loaded from YAML, shared by every step.

The same file drives a laptop run (``sam3-pipeline run``), the compiled
pipeline (its defaults and Kubernetes placement) and a submitted run (its only
parameter). A bad value fails here, before anything runs, naming the field.

Two hashes identify what a config does:

- ``run_id``: what is *trained* (data, negatives, stage recipes, evaluation
  set, and the base as the config names it). Checkpoints live under ``runs/<run_id>/``, so running a
  config again, or a retried pipeline, resumes or reuses the same stages instead of training
  them twice; changing a gate threshold or the registry alias re-gates the same
  models.
- ``content_hash``: the whole file; ``submit`` names its run after it, so a
  repeated trigger does not start a second run.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from components.errors import ConfigError
from components.evaluate.probes import MAX_EXEMPLARS, Probe
from components.gate.policy import Gate
from components.images import Images
from components.ingest.config import DataConfig
from components.model.config import ModelConfig
from components.promote.base import Base
from components.train.config import ALIGN_STAGE, Size, TrainConfig
from components.train.placement import SCHEDULE_TIMEOUT_S, Cluster, Resources, SecretName

STAGES: tuple[str, ...] = (ALIGN_STAGE, "detector", "presence", "tracker", "joint")
"""Every stage in pipeline order; a config trains the two image stages and, when it has them, the
alignment stage before them (``pretrain``) and the video stages after them (``tracker``, then ``joint``)."""


OWNED_TRAIN_KEYS = frozenset(
    ("stage", "dataset", "eval_dataset", "run_id", "init", "size", "steps", "batch_size", "checkpoint_every")
)
"""TrainConfig fields that the pipeline or a stage's own fields set: a stage's ``train`` may not."""

NOT_TRAINED = frozenset(("gate", "resources", "step_seconds"))
"""Stage fields that change how a stage is gated or run, not what it trains: left out of the run id."""

PROBES = frozenset(("exemplars", "without_presence"))
"""Evaluation fields that add probes (files of their own beside a stage's metrics.json) and change neither
what is trained nor the headline: left out of the run id, so an ablation of them reuses the checkpoints."""

PROBED_STAGE = "presence"
"""The stage whose evaluation runs the probes: the image model's last stage."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Stage(_Model):
    size: Size = "tiny"
    steps: int = Field(default=100, ge=1)
    batch_size: int = Field(default=4, ge=1)
    checkpoint_every: int = Field(default=50, ge=1)
    max_restarts: int = Field(default=3, ge=0, description="torchrun restarts after a rank dies")
    step_seconds: float = Field(
        default=5.0,
        gt=0,
        le=3600,
        description="an upper bound of one training step's wall time on the stage's resources (data "
        "loading, evaluation and checkpoints included); with steps, it sizes how long a cluster keeps "
        "retrying the stage's train step (pipeline.dag.train_retry_window). Not part of the run id",
    )
    train: dict[str, Any] = Field(
        default_factory=dict, description="further TrainConfig fields (optim, loss, positive_fraction, ...)"
    )
    resources: Resources = Field(default_factory=Resources)
    gate: Gate = Field(default_factory=Gate)

    @field_validator("train")
    @classmethod
    def _no_owned_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        clash = sorted(OWNED_TRAIN_KEYS & value.keys())
        if clash:
            raise ValueError(f"{clash} are set by the pipeline or by the stage's own fields")
        return value


class Evaluation(_Model):
    max_images: int | None = Field(default=None, ge=1, description="evaluate on the first N gold images")
    report_examples: int = Field(default=4, ge=0, le=16, description="predictions drawn in the report")
    exemplars: list[int] = Field(
        default_factory=list,
        description="probes of the presence stage's checkpoint with k ground-truth exemplar boxes given with "
        "the phrase (k in 1..4; components.evaluate.probes), each scored beside the text-only headline",
    )
    without_presence: bool = Field(
        default=False,
        description="a probe of the presence stage's checkpoint scored without the presence factor",
    )

    @field_validator("exemplars")
    @classmethod
    def _exemplar_counts(cls, value: list[int]) -> list[int]:
        bad = [k for k in value if not 1 <= k <= MAX_EXEMPLARS]
        if bad:
            raise ValueError(f"{bad}: exemplar counts go from 1 to {MAX_EXEMPLARS} (0 is the headline)")
        return sorted(set(value))

    def probes(self) -> list[Probe]:
        """The probes asked for, in table order."""
        asked = [Probe(exemplars=k) for k in self.exemplars]
        return asked + ([Probe(presence=False)] if self.without_presence else [])


class Registry(_Model):
    model: str = Field(default="sam3-tiny", pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")
    alias: Literal["candidate", "production"] = "candidate"


class Kubernetes(_Model):
    """Cluster placement of the pipeline's pods and training jobs; ignored by the local runner."""

    namespace: str = "sam3"
    queue: str = Field(default="sam3", description="Volcano queue of the training jobs")
    pipeline_service_account: str = Field(default="sam3-pipeline", description="runs the steps")
    trainer_service_account: str = Field(default="sam3-trainer", description="runs the training ranks")
    priority_class: str = "sam3-training"
    s3_secret: str = Field(default="sam3-s3", description="Secret with keys access-key and secret-key")
    s3_endpoint: str = "minio.sam3.svc:9000"
    s3_bucket: str = "sam3"
    s3_secure: bool = False
    step_retries: int = Field(default=2, ge=0, le=10, description="KFP retries of a failed step's pod")
    pushgateway_url: str = Field(
        default="http://pushgateway.sam3.svc:9091",
        pattern=r"^(https?://[^\s/]+(/\S*)?)?$",
        description="the Prometheus Pushgateway the steps push their metrics to (SAM3_PUSHGATEWAY_URL; "
        "the default is the one manifests/base deploys); empty: nothing is pushed",
    )
    evaluate: Resources = Field(default_factory=Resources, description="the evaluate steps' pod")
    images: Images = Field(
        default_factory=Images, description="the steps' and the training ranks' images (compiled in)"
    )
    image_pull_secrets: list[SecretName] = Field(
        default_factory=list,
        description="Secrets (kubernetes.io/dockerconfigjson, in namespace) every step and training pod "
        "pulls its image with",
    )
    schedule_timeout_s: float = Field(
        default=SCHEDULE_TIMEOUT_S,
        gt=0,
        description="seconds a training job may wait for its gang to be scheduled (Volcano job Pending) "
        "before its train step fails and deletes it",
    )

    def cluster(self) -> Cluster:
        return Cluster(
            namespace=self.namespace,
            queue=self.queue,
            service_account=self.trainer_service_account,
            priority_class=self.priority_class,
            s3_secret=self.s3_secret,
            s3_endpoint=self.s3_endpoint,
            s3_bucket=self.s3_bucket,
            s3_secure=self.s3_secure,
            trainer_image=self.images.ref("trainer"),
            image_pull_secrets=self.image_pull_secrets,
            schedule_timeout_s=self.schedule_timeout_s,
        )


class PipelineConfig(_Model):
    name: str = Field(default="sam3", pattern=r"^[a-z0-9][a-z0-9-]{0,30}$")
    run_id: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    scheduler: Literal["local_cwd", "kubernetes"] = "local_cwd"
    data: DataConfig
    base: Base | None = Field(
        default=None,
        description="the model the first stage starts from (a fine-tune): a registry version (MODEL@ALIAS, "
        "MODEL@VERSION) or an s3:// checkpoint; evaluated on the gold set beside every stage. Without it, "
        "the first stage starts from scratch",
    )
    pretrain: Stage | None = Field(
        default=None,
        description="stage 0: vision-text alignment of the detector's backbone, its init (optional)",
    )
    detector: Stage
    presence: Stage
    tracker: Stage | None = Field(default=None, description="stage 3: the video tracker (needs videos)")
    joint: Stage | None = Field(
        default=None, description="stage 4: images and videos together (needs tracker)"
    )
    evaluation: Evaluation = Field(default_factory=Evaluation)
    registry: Registry = Field(default_factory=Registry)
    kubernetes: Kubernetes = Field(default_factory=Kubernetes)

    @model_validator(mode="after")
    def _check_stages(self) -> PipelineConfig:
        placeholder = "s3://bucket/datasets/check/0"
        if self.pretrain is not None:
            _check_pretrain(self.pretrain, self.detector)
            if self.base is not None:
                raise ValueError(
                    "pretrain: stage 0 aligns a backbone trained from scratch, and the base already holds "
                    f"a trained one ({self.base.reference}): drop pretrain, the detector starts from the base"
                )
        if self.joint is not None and self.tracker is None:
            raise ValueError("joint: the joint stage starts from the tracker stage; configure tracker too")
        if self.tracker is not None and not self.data.has_videos():
            raise ValueError(
                "tracker: the video stages need training and gold videos (data.synthetic.videos "
                "and gold_videos, or video sources)"
            )
        for name in self.stages():
            stage: Stage = getattr(self, name)
            if stage.gate.max_base_regression is not None and self.base is None:
                raise ValueError(f"{name}.gate.max_base_regression: the config has no base to compare with")
            if name != ALIGN_STAGE and stage.gate.recognition_AUC is not None:
                raise ValueError(
                    f"{name}.gate.recognition_AUC: only the pretrain stage is scored for recognition"
                )
            try:
                self.train_config(name, placeholder, run_id="check", stage_cfg=stage)
            except ValidationError as exc:
                err = exc.errors()[0]
                where = ".".join(map(str, err["loc"]))
                raise ValueError(f"{name}.train.{where}: {err['msg']}") from None
        return self

    # -- identity ------------------------------------------------------------------
    def content_hash(self) -> str:
        return _digest(self.model_dump(mode="json"))

    def effective_run_id(self) -> str:
        if self.run_id:
            return self.run_id
        trained: dict[str, Any] = {
            "data": self.data.identity(),
            "evaluation": self.evaluation.model_dump(mode="json", exclude=set(PROBES)),
            "stages": {
                name: getattr(self, name).model_dump(mode="json", exclude=NOT_TRAINED)
                | {"world": [getattr(self, name).resources.nnodes, getattr(self, name).resources.nproc]}
                for name in self.stages()
            },
        }
        if self.base is not None:  # only then: the run ids of configs without a base stay as they were
            trained["base"] = self.base.reference
        return f"{self.name}-{_digest(trained)[:12]}"

    # -- per stage -----------------------------------------------------------------
    def stages(self) -> list[str]:
        """The stages this config trains, in pipeline order."""
        return [name for name in STAGES if getattr(self, name) is not None]

    def stage(self, name: str) -> Stage:
        if name not in self.stages():
            raise ConfigError(f"unknown stage {name!r}: this config trains {self.stages()}")
        stage: Stage = getattr(self, name)
        return stage

    def train_config(
        self,
        name: str,
        dataset: str,
        *,
        run_id: str | None = None,
        init: str | None = None,
        eval_dataset: str | None = None,
        stage_cfg: Stage | None = None,
    ) -> TrainConfig:
        """The stage's TrainConfig; ``eval_dataset``: the gold dataset the pretrain stage scores while it
        trains (the DAG passes it to that stage only)."""
        stage = stage_cfg or self.stage(name)
        return TrainConfig.model_validate(
            {
                **stage.train,
                "stage": name,
                "dataset": dataset,
                "eval_dataset": eval_dataset or None,
                "run_id": run_id or self.effective_run_id(),
                "init": init or None,
                "size": stage.size,
                "steps": stage.steps,
                "batch_size": stage.batch_size,
                "checkpoint_every": stage.checkpoint_every,
            }
        )

    # -- loading -------------------------------------------------------------------
    @classmethod
    def parse(cls, text: str, where: str = "config") -> PipelineConfig:
        """From YAML (or JSON) text; ConfigError names the file and the field."""
        doc = yaml_mapping(text, where)
        try:
            return cls.model_validate(doc)
        except ValidationError as exc:
            raise ConfigError(f"{where}: {field_errors(exc)}") from None

    @classmethod
    def load(cls, path: Path) -> PipelineConfig:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the config: {exc.strerror}") from None
        return cls.parse(text, str(path))

    def to_json(self) -> str:
        """The form passed to every pipeline step (compact, no secrets: the config holds none)."""
        return self.model_dump_json(exclude_none=False)


def yaml_mapping(text: str, where: str) -> dict[str, Any]:
    """YAML (or JSON) text whose top level is a mapping; ConfigError prefixed with ``where`` otherwise."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{where}: expected a mapping at the top level")
    return doc


def field_errors(exc: ValidationError) -> str:
    """Every field pydantic refused, ``a.b: message``, joined by ``; ``."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or '(top)'}: {e['msg']}" for e in exc.errors())


def _check_pretrain(pretrain: Stage, detector: Stage) -> None:
    """The alignment stage hands its backbone to the detector, and makes no detections to gate."""
    ours, theirs = (
        ModelConfig.preset(s.size).model_dump(exclude={"resolution"}) for s in (pretrain, detector)
    )
    if ours != theirs:
        raise ValueError(
            f"pretrain.size: {pretrain.size} is not the detector's size ({detector.size}) at any "
            "resolution: the detector starts from the pretrain stage's backbone"
        )
    asked = pretrain.gate.detection_rules()
    if asked:
        raise ValueError(
            f"pretrain.gate: {', '.join(asked)} gate detections, and the pretrain stage makes none: "
            "gate it on recognition_AUC"
        )


def _digest(doc: Any) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


CONFIGS = Path(__file__).parent / "configs"
DEFAULT_CONFIG = CONFIGS / "local.yaml"
