"""The model a run starts from (the pipeline config's ``base``), resolved when the run starts.

A base is a registry version (``model: sam3-tiny@production`` names an alias, ``sam3-tiny@3`` a
version number) or a checkpoint in the store (``checkpoint: s3://...``: a step folder, its
``.../checkpoints`` folder or a weights file). The pipeline's ``resolve-base`` step turns it into the
URI of the weights that the first trained stage loads as its ``init`` and that the ``evaluate base``
step scores on the gold set, and records what it found in ``runs/<run_id>/executions/<execution>/
base.json`` (an alias is read once per execution: the gates, the outcome and the model card all name
the version that run started from). Gates compare each stage with the base's evaluation
(``Gate.max_base_regression``); the promoted version's card carries the base and its scores.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from components.errors import ConfigError, DataError
from components.gate.policy import stage_metrics
from components.model.config import ModelConfig
from components.schemas import evaluation_metrics_key, execution_prefix
from components.storage import ObjectStore

log = logging.getLogger(__name__)

BASE_STAGE = "base"
"""The name the base's evaluation goes under (``runs/<run_id>/base/eval/``), beside the stages'."""
REFERENCE_RE = re.compile(r"^([a-z0-9][a-z0-9._-]{0,62})@([a-z][a-z0-9-]{0,31}|[1-9][0-9]*)$")


class Base(BaseModel):
    """The config section: exactly one of ``model`` and ``checkpoint``."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(
        default=None,
        description="a registry version: MODEL@ALIAS (sam3-tiny@production, resolved when the run starts) "
        "or MODEL@VERSION (sam3-tiny@3)",
    )
    checkpoint: str | None = Field(
        default=None,
        description="an s3:// checkpoint: a step folder, its checkpoints folder (latest.json) or a weights "
        "file (safetensors, or a torch save holding a state dict)",
    )
    pinned: int | None = Field(
        default=None,
        ge=1,
        description="the version MODEL@ALIAS named when `sam3-pipeline run` started (it sets this, so that "
        "the run id changes when the alias moves); unset, the resolve-base step reads the alias",
    )

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: object) -> object:
        """``base: sam3-tiny@production`` or ``base: s3://...`` as shorthands of the two fields."""
        if isinstance(value, str):
            return {"checkpoint": value} if "://" in value else {"model": value}
        return value

    @model_validator(mode="after")
    def _one(self) -> Base:
        if (self.model is None) == (self.checkpoint is None):
            raise ValueError(
                "give exactly one of model (MODEL@ALIAS or MODEL@VERSION) and checkpoint (s3://)"
            )
        if self.model is not None and not REFERENCE_RE.match(self.model):
            raise ValueError(
                f"model {self.model!r}: expected MODEL@ALIAS or MODEL@VERSION, e.g. sam3-tiny@production"
            )
        if self.checkpoint is not None and not self.checkpoint.startswith("s3://"):
            raise ValueError(
                f"checkpoint {self.checkpoint!r}: expected an s3:// URI (the steps read the store)"
            )
        if self.pinned is not None and (self.model is None or self.model.partition("@")[2].isdigit()):
            raise ValueError("pinned: only a MODEL@ALIAS base is pinned to a version")
        return self

    @property
    def reference(self) -> str:
        """As the config names it, with the version an alias was pinned to."""
        pinned = f" (version {self.pinned})" if self.pinned is not None else ""
        return (self.model or self.checkpoint or "") + pinned

    def registry_ref(self) -> tuple[str, str] | None:
        """(model, version or alias) of a registry base, the pinned version first; None for a checkpoint."""
        if self.model is None:
            return None
        name, _, ref = self.model.partition("@")
        return name, str(self.pinned) if self.pinned is not None else ref


class ResolvedBase(BaseModel):
    """What a base reference named when the run started (``base.json``)."""

    model_config = ConfigDict(extra="forbid")

    reference: str  # as configured
    weights: str  # s3:// URI of the weights the first stage loads and the base evaluation scores
    model: str | None = None  # registry bases: the model, its version, and the card's size and stage
    version: int | None = None
    size: str | None = None
    stage: str | None = None
    metrics: dict[str, float] = {}  # the base's gold headline, where a reader has added it


def base_key(run_id: str, execution: str) -> str:
    return f"{execution_prefix(run_id, execution)}/base.json"


def resolve(store: ObjectStore, base: Base, size: str) -> ResolvedBase:
    """The weights ``base`` names now; ConfigError for an unknown model, alias or version, or a registry
    version of another architecture than ``size`` (the first stage's preset); DataError for a checkpoint
    that is not in the store."""
    from components.promote.registry import Registry
    from components.train.checkpoint import WEIGHTS, step_folder

    named = base.registry_ref()
    if named is not None:
        name, ref = named
        registry = Registry(store, name)
        card = _card(registry, ref, base)
        _check_size(card.size, size, base.reference)
        return ResolvedBase(
            reference=base.reference,
            weights=registry.weights_uri(card.version),
            model=name,
            version=card.version,
            size=card.size,
            stage=card.stage,
        )
    uri = base.reference
    key = store.key_of(uri).rstrip("/")
    if not key.endswith((".safetensors", ".pt", ".pth")):
        key = f"{step_folder(uri, store)}/{WEIGHTS}"
    if not store.exists(key):
        raise DataError(f"base checkpoint {uri}: {store.uri(key)} is not in the store")
    return ResolvedBase(reference=uri, weights=store.uri(key))


def _card(registry: Any, ref: str, base: Base) -> Any:
    """The registry card ``ref`` names; ConfigError naming the base when there is none."""
    try:
        return registry.resolve(ref)
    except ConfigError as exc:
        raise ConfigError(f"base {base.reference}: {exc}") from None


def _check_size(theirs: str, ours: str, reference: str) -> None:
    """The base's preset must build the same tensors as the first stage's (tiny and tiny112 do: only the
    input resolution differs)."""
    shapes = [ModelConfig.preset(s).model_dump(exclude={"resolution"}) for s in (theirs, ours)]
    if shapes[0] != shapes[1]:
        raise ConfigError(
            f"base {reference} is a {theirs} model; the first stage trains {ours}, whose tensors differ: "
            "give the stages the base's size (or one that differs from it in resolution only)"
        )


def resolve_and_record(
    store: ObjectStore, base: Base, size: str, run_id: str, execution: str
) -> ResolvedBase:
    """``resolve``, logged and recorded as this execution's ``base.json``."""
    found = resolve(store, base, size)
    card = (
        f" ({found.model} version {found.version}: {found.size}, its {found.stage} stage)"
        if found.version
        else ""
    )
    log.info("base %s%s: the first stage starts from %s", base.reference, card, found.weights)
    store.put_json(base_key(run_id, execution), found)
    return found


def read_base(store: ObjectStore, run_id: str, execution: str) -> ResolvedBase | None:
    """This execution's resolved base with its gold headline (when evaluated), or None without a base."""
    key = base_key(run_id, execution)
    if not store.exists(key):
        return None
    found = ResolvedBase.model_validate(store.get_json(key))
    evaluated = evaluation_metrics_key(run_id, BASE_STAGE)
    if store.exists(evaluated):
        doc = store.get_json(evaluated)
        if doc.get("checkpoint") == found.weights:  # not an earlier execution's base
            found.metrics = stage_metrics(doc)
    return found


def pin(store: ObjectStore, base: Base) -> Base:
    """A MODEL@ALIAS base pinned to the version the alias names now (``run`` pins before it builds the DAG,
    so that the run id, which hashes the base, changes when the alias moves)."""
    named = base.registry_ref()
    if named is None or named[1].isdigit():
        return base
    from components.promote.registry import Registry

    card = _card(Registry(store, named[0]), named[1], base)
    return base.model_copy(update={"pinned": card.version})
