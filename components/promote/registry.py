"""The model registry in the object store.

Layout (docs/architecture.md): ``registry/<model>/versions/<N>/`` holds ``model.safetensors``
(copied from a checkpoint step folder on the server: the weights, 3.4 GB for the
full model, are hashed in chunks and never held in memory; imported weights are streamed
from a local file, components.promote.importer), ``config.json`` (that step's TrainConfig,
when present) and ``model_card.json``, written last: a version without a card is
incomplete and invisible. ``claim.json`` reserves ``N`` with a create-only write,
so two concurrent registrations never share a number. ``registry/<model>/aliases/
<alias>.json`` names a version; it moves only by a conditional write on the ETag
that was read, so a concurrent change is refused rather than overwritten.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict

from components.errors import ConditionFailed, ConfigError, DataError, StorageError
from components.model.config import PresetName as Size
from components.storage import ObjectStore, sha256_file
from components.train.checkpoint import CONFIG, WEIGHTS, checkpoint_config, step_folder

log = logging.getLogger(__name__)

CARD = "model_card.json"
CLAIM = "claim.json"
MODEL_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
ALIAS_RE = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
_SECRET_RE = re.compile(r"secret|password|passwd|token|access_key|credential", re.IGNORECASE)
_CLAIM_TRIES = 5


class ImportedFrom(BaseModel):
    """Where the weights of an imported version come from (components.promote.importer)."""

    model_config = ConfigDict(extra="forbid")

    source: str  # the file, s3:// or hf:// URI imported
    source_sha256: str  # of the source file, as read
    architecture: Literal["image", "video"]  # the model its keys were checked against, at the card's size
    licence: str  # the terms the weights come under


class StartedFrom(BaseModel):
    """The base a fine-tuned version started from (components.promote.base), and its gold scores."""

    model_config = ConfigDict(extra="forbid")

    reference: str  # as the config named it: MODEL@ALIAS, MODEL@VERSION or an s3:// checkpoint
    weights: str  # the weights the run loaded
    model: str | None = None
    version: int | None = None
    metrics: dict[str, float] = {}  # the base's gold headline, by the same evaluate step as the stages'


class ModelCard(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: int = 1
    model: str
    version: int
    created_at: str  # ISO 8601, UTC
    run_id: str
    stage: str
    checkpoint: str  # the checkpoint step folder URI the weights were copied from
    weights_sha256: str
    size: Size
    metrics: dict[str, dict[str, float]]  # stage -> metric -> value
    datasets: dict[str, str]  # role (train, gold, ...) -> dataset URI
    config: dict[str, Any]  # the pipeline config, secrets removed
    code_version: str
    execution: str = ""  # the pipeline run that promoted it
    imported: ImportedFrom | None = None  # weights from outside the pipeline (`models import`)
    base: StartedFrom | None = None  # the model a fine-tune started from (the config's `base`)


class AliasRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str
    alias: str
    version: int
    updated_at: str
    updated_by: str = ""
    history: list[int] = []  # versions it pointed at before, newest last


class AliasConflict(ConditionFailed):
    """An alias moved between our read and our conditional write; nothing was changed."""


def check_model_name(model: str) -> str:
    if not MODEL_RE.match(model):
        raise ConfigError(
            f"bad model name {model!r}: use 1-63 of a-z 0-9 . _ -, starting with a letter or digit"
        )
    return model


def check_alias_name(alias: str) -> str:
    if not ALIAS_RE.match(alias):
        raise ConfigError(f"bad alias name {alias!r}: use 1-32 of a-z 0-9 -, starting with a letter")
    return alias


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _scrub(obj: Any) -> Any:
    """Drop secret-looking keys from a config tree before it goes into a card."""
    if isinstance(obj, dict):
        return {k: _scrub(v) for k, v in obj.items() if not _SECRET_RE.search(str(k))}
    if isinstance(obj, list):
        return [_scrub(v) for v in obj]
    return obj


def list_models(store: ObjectStore) -> list[str]:
    """Models that have anything under ``registry/``."""
    names = {key.split("/")[1] for key, _ in store.list_objects("registry/") if key.count("/") >= 2}
    return sorted(n for n in names if MODEL_RE.match(n))


class Registry:
    def __init__(self, store: ObjectStore, model: str) -> None:
        self.store = store
        self.model = check_model_name(model)
        self.prefix = f"registry/{model}"

    def _vkey(self, version: int) -> str:
        return f"{self.prefix}/versions/{version}"

    def _akey(self, alias: str) -> str:
        return f"{self.prefix}/aliases/{check_alias_name(alias)}.json"

    def _listed(self) -> dict[int, set[str]]:
        """Every version number with any object (claimed or complete) -> its file names."""
        found: dict[int, set[str]] = {}
        base = f"{self.prefix}/versions/"
        for key, _ in self.store.list_objects(base):
            number, _, name = key.removeprefix(base).partition("/")
            if number.isdigit():
                found.setdefault(int(number), set()).add(name)
        return found

    def versions(self) -> list[int]:
        return sorted(n for n, files in self._listed().items() if CARD in files)

    def cards(self) -> Iterator[ModelCard]:
        """The card of every complete version, oldest first."""
        return (self.card(version) for version in self.versions())

    def card(self, version: int) -> ModelCard:
        key = f"{self._vkey(version)}/{CARD}"
        if not self.store.exists(key):
            raise ConfigError(
                f"model {self.model!r} has no version {version} ({self.store.uri(key)} is absent)"
            )
        return ModelCard.model_validate(self.store.get_json(key))

    def _read_alias(self, alias: str) -> tuple[AliasRecord | None, str | None]:
        got = self.store.get_json_etag(self._akey(alias))
        if got is None:
            return None, None
        return AliasRecord.model_validate(got[0]), got[1]

    def alias(self, name: str) -> AliasRecord | None:
        return self._read_alias(name)[0]

    def aliases(self) -> dict[str, AliasRecord]:
        base = f"{self.prefix}/aliases/"
        names = [k.removeprefix(base).removesuffix(".json") for k, _ in self.store.list_objects(base)]
        found = {n: self.alias(n) for n in names if ALIAS_RE.match(n)}
        return {n: r for n, r in found.items() if r is not None}

    def resolve(self, ref: str) -> ModelCard:
        """A version number or an alias name -> its model card."""
        if ref.isdigit():
            return self.card(int(ref))
        record = self.alias(ref)
        if record is None:
            raise ConfigError(f"model {self.model!r} has no alias {ref!r} (and it is not a version number)")
        return self.card(record.version)

    def weights_uri(self, version: int) -> str:
        return self.store.uri(f"{self._vkey(version)}/{WEIGHTS}")

    def _weights_key(self, checkpoint: str) -> tuple[str, str]:
        """(step folder key, weights key) of a step folder, weights file or ``.../checkpoints`` URI."""
        key = self.store.key_of(checkpoint).rstrip("/")
        folder = step_folder(checkpoint, self.store)
        if key.endswith((".pt", ".pth", ".safetensors")) and not key.endswith(f"/{WEIGHTS}"):
            raise ConfigError(f"{checkpoint}: the registry takes a checkpoint step folder holding {WEIGHTS}")
        if not self.store.exists(f"{folder}/{WEIGHTS}"):
            raise DataError(
                f"{checkpoint}: no checkpoint ({self.store.uri(f'{folder}/{WEIGHTS}')} is absent)"
            )
        return folder, f"{folder}/{WEIGHTS}"

    def register(
        self,
        checkpoint: str,
        *,
        run_id: str,
        stage: str,
        metrics: dict[str, dict[str, float]],
        datasets: dict[str, str],
        config: dict[str, Any],
        code_version: str,
        execution: str = "",
        size: str | None = None,
        base: StartedFrom | None = None,
    ) -> tuple[ModelCard, bool]:
        """Copy a checkpoint into a new version; (the existing card, False) when its weights are there."""
        folder, weights_key = self._weights_key(checkpoint)
        weights, etag = self.store.sha256_object(weights_key)
        digest = weights.sha256
        existing = self.existing(digest)
        if existing is not None:
            log.info("%s version %d already holds these weights", self.model, existing.version)
            return existing, False
        train_config = checkpoint_config(self.store.uri(folder), self.store)
        card_size = (train_config or {}).get("size") or size
        if card_size not in get_args(Size):
            raise ConfigError(f"{checkpoint}: model size {card_size!r} is not one of {get_args(Size)}")
        version = self._claim()
        target = self._vkey(version)
        # the version that was hashed, or ConditionFailed; the card's hash is the copy's
        copied = self.store.copy(f"{target}/{WEIGHTS}", weights_key, etag=etag or None, sha256=digest)
        if copied.size != weights.size:
            raise StorageError(
                f"copying {self.store.uri(weights_key)} into version {version} gave {copied.size} bytes "
                f"of {weights.size}"
            )
        if train_config is not None:
            self.store.put_json(f"{target}/{CONFIG}", train_config)
        card = ModelCard(
            model=self.model,
            version=version,
            created_at=_now(),
            run_id=run_id,
            stage=stage,
            checkpoint=self.store.uri(folder),
            weights_sha256=digest,
            size=card_size,
            metrics=metrics,
            datasets=datasets,
            config=_scrub(config),
            code_version=code_version,
            execution=execution,
            base=base,
        )
        self.store.put_json(f"{target}/{CARD}", card)  # the commit: the version becomes visible
        log.info("registered %s version %d from %s", self.model, version, card.checkpoint)
        return card, True

    def existing(self, digest: str) -> ModelCard | None:
        """The card of a version whose weights have this sha256, if any."""
        return next((card for card in self.cards() if card.weights_sha256 == digest), None)

    def register_file(
        self,
        path: Path,
        *,
        source: str,
        stage: str,
        size: str,
        code_version: str,
        imported: ImportedFrom | None = None,
    ) -> tuple[ModelCard, bool]:
        """A local safetensors file as a new version, streamed into the store (memory does not grow with
        the file); ``source`` is the card's ``checkpoint``. (The existing card, False) when its weights
        are there."""
        if size not in get_args(Size):
            raise ConfigError(f"{source}: model size {size!r} is not one of {get_args(Size)}")
        digest = sha256_file(path)
        found = self.existing(digest)
        if found is not None:
            log.info("%s version %d already holds these weights", self.model, found.version)
            return found, False
        version = self._claim()
        base = self._vkey(version)
        log.info(
            "%s version %d: uploading %s (%.2f GB)", self.model, version, path, path.stat().st_size / 1e9
        )
        self.store.put_file(f"{base}/{WEIGHTS}", path, sha256=digest)
        card = ModelCard(
            model=self.model,
            version=version,
            created_at=_now(),
            run_id="",
            stage=stage,
            checkpoint=source,
            weights_sha256=digest,
            size=size,
            metrics={},
            datasets={},
            config={},
            code_version=code_version,
            imported=imported,
        )
        self.store.put_json(f"{base}/{CARD}", card)  # the commit: the version becomes visible
        log.info("registered %s version %d from %s", self.model, version, source)
        return card, True

    def _claim(self) -> int:
        version = max(self._listed(), default=0) + 1
        for _ in range(_CLAIM_TRIES):
            try:
                self.store.put_json_if(f"{self._vkey(version)}/{CLAIM}", {"claimed_at": _now()}, etag=None)
                return version
            except ConditionFailed:
                version += 1
        raise AliasConflict(
            f"model {self.model!r}: could not claim a version number after {_CLAIM_TRIES} tries"
        )

    def _write_alias(self, record: AliasRecord, etag: str | None) -> AliasRecord:
        try:
            self.store.put_json_if(self._akey(record.alias), record, etag=etag)
        except ConditionFailed as exc:
            got = self.store.get_json_etag(self._akey(record.alias))  # what won, read afresh
            where = f"version {got[0].get('version')}" if got else "nothing (it was removed)"
            raise AliasConflict(
                f"alias {record.alias!r} of model {self.model!r} changed concurrently and now points at "
                f"{where}; nothing was changed, re-run the command"
            ) from exc
        log.info("%s alias %s -> version %d", self.model, record.alias, record.version)
        return record

    def set_alias(self, alias: str, version: int, *, updated_by: str = "") -> AliasRecord:
        check_alias_name(alias)
        if version not in self.versions():
            raise ConfigError(f"model {self.model!r} has no complete version {version}")
        old, etag = self._read_alias(alias)
        if old is not None and old.version == version:
            return old
        record = AliasRecord(
            model=self.model,
            alias=alias,
            version=version,
            updated_at=_now(),
            updated_by=updated_by,
            history=[*old.history, old.version] if old else [],
        )
        return self._write_alias(record, etag)

    def rollback(self, alias: str, *, updated_by: str = "") -> AliasRecord:
        old, etag = self._read_alias(alias)
        if old is None:
            raise ConfigError(f"model {self.model!r} has no alias {alias!r} to roll back")
        if not old.history:
            raise ConfigError(
                f"alias {alias!r} of model {self.model!r} has no earlier version to roll back to "
                f"(it points at version {old.version})"
            )
        record = old.model_copy(
            update={
                "version": old.history[-1],
                "history": old.history[:-1],
                "updated_at": _now(),
                "updated_by": updated_by,
            }
        )
        return self._write_alias(record, etag)
