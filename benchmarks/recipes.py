"""The embedded default's stage recipes (pipeline/configs/local.yaml) with a benchmark variant's overrides.

Shared by the quality benchmarks: a variant is a JSON object of TrainConfig fields; a mapping value
(``optim``, ``clips``, ``loss``, ...) is merged into the recipe's one level deep, anything else replaces.
"""

from __future__ import annotations

from typing import Any

from components.train.config import TrainConfig
from pipeline.config import DEFAULT_CONFIG, PipelineConfig


def local_config() -> PipelineConfig:
    return PipelineConfig.load(DEFAULT_CONFIG)


def local_recipe(
    stage: str,
    overrides: dict[str, Any],
    *,
    dataset: str,
    run_id: str,
    init: str | None = None,
    **fields: Any,
) -> TrainConfig:
    """The TrainConfig ``make run`` gives ``stage`` (``PipelineConfig.train_config``), then ``fields``
    (what the benchmark sets, such as ``steps``), then the variant's ``overrides``."""
    doc = local_config().train_config(stage, dataset, run_id=run_id, init=init).model_dump() | fields
    for key, value in overrides.items():
        doc[key] = {**doc.get(key, {}), **value} if isinstance(value, dict) else value
    return TrainConfig.model_validate(doc)
