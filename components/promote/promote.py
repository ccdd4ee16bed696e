"""Promote a gated checkpoint: a registry version with its model card, then the alias moved."""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel, ConfigDict

from components.gate.policy import stage_metrics as gated_metrics
from components.images import package_version
from components.promote.base import read_base
from components.promote.registry import Registry, StartedFrom
from components.schemas import evaluation_metrics_key, execution_prefix
from components.storage import ObjectStore

log = logging.getLogger(__name__)


class Promotion(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str
    version: int
    alias: str
    created: bool  # False: these weights were already a version
    previous: int | None  # the version the alias pointed at before
    uri: str


def stage_metrics(store: ObjectStore, run_id: str, stages: list[str]) -> dict[str, dict[str, float]]:
    """Headline metrics of each evaluated stage, from ``runs/<run_id>/<stage>/eval/metrics.json``."""
    out: dict[str, dict[str, float]] = {}
    for stage in stages:
        key = evaluation_metrics_key(run_id, stage)
        if store.exists(key):
            out[stage] = gated_metrics(store.get_json(key))
    return out


def promote(
    store: ObjectStore,
    *,
    model: str,
    alias: str,
    checkpoint: str,
    run_id: str,
    stages: list[str],
    datasets: dict[str, str],
    config: dict[str, Any],
    execution: str = "",
) -> Promotion:
    registry = Registry(store, model)
    base = read_base(store, run_id, execution)
    card, created = registry.register(
        checkpoint,
        run_id=run_id,
        stage=stages[-1],
        metrics=stage_metrics(store, run_id, stages),
        datasets=datasets,
        config=config,
        code_version=package_version(),
        execution=execution,
        base=StartedFrom.model_validate(base.model_dump(include=set(StartedFrom.model_fields)))
        if base
        else None,
    )
    before = registry.alias(alias)
    record = registry.set_alias(alias, card.version, updated_by=f"pipeline run {execution or run_id}")
    promotion = Promotion(
        model=model,
        version=record.version,
        alias=alias,
        created=created,
        previous=before.version if before else None,
        uri=store.uri(f"{registry.prefix}/versions/{card.version}"),
    )
    store.put_json(f"{execution_prefix(run_id, execution)}/promotion.json", promotion)
    log.info("%s version %d is now %r (was %s)", model, card.version, alias, promotion.previous)
    return promotion
