"""Ablations as configuration: a base pipeline config, named variants of it, one comparison table.

An ablation file (``pipeline/configs/ablations.yaml``) names a base pipeline config, overrides common to
every run (``common``), and ``variants``, each an override deep-merged into the base: a mapping merges key
by key, anything else (a list, a number, ``null``) replaces. The merged document is validated as a
``PipelineConfig``, so a bad override fails before anything runs, naming the file, the variant and the
field. The base itself (with ``common``) is the table's first row, ``base``.

Planning (``plan``) is pure: each variant becomes a pipeline config whose run id is the content hash of
what it trains (``PipelineConfig.effective_run_id``). A variant that trains what an earlier one trains
(same data, same recipes; a variant that only adds evaluation probes, or changes nothing) gets the same
run id, so its run finds the checkpoints and metrics there and trains nothing again.

Every planned run is made safe to compare rather than to ship: its gates are opened (a variant that trains
worse must still reach the stage the table reads), and it registers into ``<model>-ablations`` as
``candidate`` (an ablation never moves the base's ``production``). Neither is part of the run id.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from components.errors import ConfigError
from components.train.config import VIDEO_STAGES
from pipeline.config import CONFIGS, PROBED_STAGE, STAGES, PipelineConfig, field_errors, yaml_mapping

BASE_ROW = "base"
REPO_ROOT = CONFIGS.parents[1]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Published(_Model):
    """A published figure to show beside a row (SAM 3's ablation tables): cgF1 and pmF1 0-100, IL_MCC 0-1."""

    cgF1: float | None = None
    IL_MCC: float | None = None
    pmF1: float | None = None


class Variant(_Model):
    ablation: str = Field(default="", description="the ablation it belongs to: a section of the table")
    override: dict[str, Any] = Field(default_factory=dict, description="deep-merged into the base config")
    published: Published | None = Field(default=None, description="the published figures of this row")
    probes_published: dict[str, Published] = Field(
        default_factory=dict,
        description="published figures of the rows of its evaluation probes, by probe name (exemplars-1)",
    )


class AblationConfig(_Model):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,30}$", description="names the table in the store")
    base: str = Field(description="the base pipeline config: relative to this file's folder or the repo")
    common: dict[str, Any] = Field(
        default_factory=dict, description="deep-merged into the base for every run, the base row included"
    )
    base_published: Published | None = Field(default=None, description="published figures of the base row")
    base_ablation: str = Field(default="", description="the section of the base row")
    stage: str = Field(default=PROBED_STAGE, description="the stage whose evaluation the table reads")
    variants: dict[str, Variant] = Field(min_length=1)


@dataclass(frozen=True)
class PlannedRun:
    variant: str  # "base" or a variant's name
    spec: Variant
    config: PipelineConfig
    shares: str | None = None  # the earlier row whose run id (checkpoints, metrics) this one reuses

    @property
    def run_id(self) -> str:
        return self.config.effective_run_id()


def merge(base: Any, override: Any) -> Any:
    """``override`` deep-merged into ``base`` (neither is changed): mappings key by key, the rest replaces."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = copy.deepcopy(base)
        for key, value in override.items():
            out[key] = merge(base.get(key), value)
        return out
    return copy.deepcopy(override)


def for_comparison(doc: dict[str, Any]) -> dict[str, Any]:
    """The settings that make a run an ablation's: gates open, registered as a candidate of its own model."""
    out = copy.deepcopy(doc)
    for stage in STAGES:
        if isinstance(out.get(stage), dict):
            out[stage]["gate"] = {}
    registry = out.get("registry") or {}
    model = str(registry.get("model", "sam3-tiny"))
    out["registry"] = {"model": f"{model[:52]}-ablations", "alias": "candidate"}
    return out


def plan(ablation: AblationConfig, base_doc: dict[str, Any], where: str = "ablation") -> list[PlannedRun]:
    """The runs of an ablation, the base first, with the rows whose checkpoints each one reuses."""
    if base_doc.get("run_id"):
        raise ConfigError(
            f"{where}: base {ablation.base} sets run_id: an ablation's runs are named by what they train, "
            "drop it"
        )
    rows = [(BASE_ROW, Variant(ablation=ablation.base_ablation, published=ablation.base_published))]
    rows += [(name, variant) for name, variant in ablation.variants.items()]
    if BASE_ROW in ablation.variants:
        raise ConfigError(f"{where}: variants.{BASE_ROW}: the name is the base row's; rename the variant")
    planned: list[PlannedRun] = []
    seen: dict[str, str] = {}
    common = merge(base_doc, ablation.common)
    for name, variant in rows:
        label = "common" if name == BASE_ROW else f"variants.{name}.override"
        doc = for_comparison(merge(common, variant.override))
        if doc.get("run_id"):
            raise ConfigError(
                f"{where}: {label}: sets run_id; an ablation's runs are named by what they train"
            )
        try:
            cfg = PipelineConfig.model_validate(doc)
        except ValidationError as exc:
            raise ConfigError(f"{where}: {label}: {field_errors(exc)}") from None
        stage = ablation.stage
        if stage not in cfg.stages() or stage in VIDEO_STAGES:
            raise ConfigError(
                f"{where}: stage: {stage!r} is not an image stage that row {name!r} trains ({cfg.stages()})"
            )
        probes = {p.name for p in cfg.evaluation.probes()}
        unknown = sorted(set(variant.probes_published) - probes)
        if unknown:
            raise ConfigError(
                f"{where}: variants.{name}.probes_published: {unknown} are not probes it asks for "
                f"({sorted(probes) or 'none'}: evaluation.exemplars, evaluation.without_presence)"
            )
        if probes and stage != PROBED_STAGE:
            raise ConfigError(
                f"{where}: variants.{name}: probes run on the {PROBED_STAGE} stage, not {stage}"
            )
        run_id = cfg.effective_run_id()
        planned.append(PlannedRun(name, variant, cfg, shares=seen.get(run_id)))
        seen.setdefault(run_id, name)
    return planned


def plan_hash(ablation: AblationConfig, planned: list[PlannedRun]) -> str:
    """What the table is of: every row's whole config, its published figures and the stage read."""
    doc = {
        "stage": ablation.stage,
        "rows": [[p.variant, p.config.content_hash(), p.spec.model_dump(mode="json")] for p in planned],
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def resolve_base(base: str, folder: Path) -> Path:
    """A relative base path: against the ablation file's folder, else the repository root."""
    path = Path(base)
    if path.is_absolute():
        return path
    for root in (folder, REPO_ROOT):
        if (root / path).is_file():
            return root / path
    return folder / path


def load(path: Path) -> tuple[AblationConfig, list[PlannedRun]]:
    """Parse and plan an ablation file; ConfigError names the file, the variant and the field."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the ablation config: {exc.strerror}") from None
    try:
        ablation = AblationConfig.model_validate(yaml_mapping(text, str(path)))
    except ValidationError as exc:
        raise ConfigError(f"{path}: {field_errors(exc)}") from None
    base_path = resolve_base(ablation.base, Path(path).parent)
    where = f"{path}: base {ablation.base}"
    try:
        base_text = base_path.read_text()
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read it: {exc.strerror}") from None
    return ablation, plan(ablation, yaml_mapping(base_text, where), str(path))
