"""Checkpoints in the object store, committed by a pointer.

Layout (docs/architecture.md): ``runs/<run_id>/<stage>/checkpoints/step-NNNNNNN/`` holds
``model.safetensors`` (weights) and ``trainer.pt`` (optimizer, scheduler,
step, RNG state); ``latest.json`` names the newest complete step and is
written only after every file of that step is in the store. A restarted job
resumes from ``latest.json``; a step folder without it is ignored and later
overwritten. Only rank 0 writes.
"""

from __future__ import annotations

import io
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from components.errors import DataError
from components.storage import ObjectStore

log = logging.getLogger(__name__)

WEIGHTS = "model.safetensors"
STATE = "trainer.pt"
CONFIG = "config.json"  # the TrainConfig that produced the step (model size, stage, data): no secrets


class LatestPointer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    step: int
    key: str  # the step folder
    weights: str  # s3:// URI of model.safetensors
    saved_at: float
    kept: list[int]


@dataclass
class Restored:
    step: int
    weights: dict[str, torch.Tensor]
    state: dict[str, Any]


class CheckpointStore:
    def __init__(self, store: ObjectStore, prefix: str, keep: int = 2) -> None:
        self.store = store
        self.prefix = f"{prefix}/checkpoints"
        self.keep = keep

    @property
    def latest_key(self) -> str:
        return f"{self.prefix}/latest.json"

    def step_key(self, step: int) -> str:
        return f"{self.prefix}/step-{step:07d}"

    def latest(self) -> LatestPointer | None:
        if not self.store.exists(self.latest_key):
            return None
        return LatestPointer.model_validate(self.store.get_json(self.latest_key))

    def save(
        self,
        step: int,
        weights: dict[str, torch.Tensor],
        state: dict[str, Any],
        config: dict[str, Any] | None = None,
    ) -> LatestPointer:
        """Write the step folder, then move ``latest.json`` to it, then drop folders beyond ``keep``."""
        folder = self.step_key(step)
        if config is not None:
            self.store.put_json(f"{folder}/{CONFIG}", config)
        blob = save_safetensors({k: v.detach().contiguous().cpu() for k, v in weights.items()})
        self.store.put_bytes(f"{folder}/{WEIGHTS}", blob)
        buf = io.BytesIO()
        torch.save(state, buf)
        self.store.put_bytes(f"{folder}/{STATE}", buf.getvalue())
        previous = self.latest()
        kept = sorted({*(previous.kept if previous else []), step})[-self.keep :]
        pointer = LatestPointer(
            step=step,
            key=folder,
            weights=self.store.uri(f"{folder}/{WEIGHTS}"),
            saved_at=time.time(),
            kept=kept,
        )
        self.store.put_json(self.latest_key, pointer)  # the commit
        for old in sorted({*(previous.kept if previous else [])} - set(kept)):
            self.store.delete_prefix(self.step_key(old) + "/")
        log.info("checkpoint step %d committed at %s", step, self.store.uri(folder))
        return pointer

    def restore(self) -> Restored | None:
        pointer = self.latest()
        if pointer is None:
            return None
        weights = load_safetensors(self.store.get_bytes(f"{pointer.key}/{WEIGHTS}"))
        state = torch.load(io.BytesIO(self.store.get_bytes(f"{pointer.key}/{STATE}")), weights_only=False)
        return Restored(step=pointer.step, weights=weights, state=state)


def step_folder(uri: str, store: ObjectStore) -> str:
    """The step-folder key a checkpoint URI names: ``.../step-N``, its weights file, or ``.../checkpoints``
    (``latest.json`` resolved)."""
    key = store.key_of(uri).rstrip("/").removesuffix("/latest.json")
    if key.endswith("/checkpoints"):
        if not store.exists(f"{key}/latest.json"):
            raise DataError(f"{uri}: no committed checkpoint (latest.json is absent)")
        key = LatestPointer.model_validate(store.get_json(f"{key}/latest.json")).key
    return key.removesuffix(f"/{WEIGHTS}")


def checkpoint_config(uri: str, store: ObjectStore) -> dict[str, Any] | None:
    """The TrainConfig saved beside a checkpoint's weights (None for foreign checkpoints)."""
    if not uri.startswith("s3://"):
        return None
    key = step_folder(uri, store)
    if not store.exists(f"{key}/{CONFIG}"):
        return None
    return dict(store.get_json(f"{key}/{CONFIG}"))


def read_weights(uri_or_path: str, store: ObjectStore | None) -> dict[str, torch.Tensor]:
    """Weights from a local file or ``s3://`` URI: safetensors, or a torch checkpoint holding a state dict.

    A checkpoint folder URI (``.../step-N`` or ``.../checkpoints``) resolves to its weights file.
    """
    if uri_or_path.startswith("s3://"):
        if store is None:
            raise DataError(f"{uri_or_path}: reading s3:// needs the object store settings (SAM3_S3_*)")
        key = store.key_of(uri_or_path)
        if not key.endswith((".safetensors", ".pt", ".pth")) or key.endswith(f"/{WEIGHTS}"):
            key = f"{step_folder(uri_or_path, store)}/{WEIGHTS}"
        if not store.exists(key):
            raise DataError(f"{store.uri(key)}: no such checkpoint")
        data = store.get_bytes(key)
        name = key
    else:
        path = Path(uri_or_path)
        if not path.exists():
            raise DataError(f"{path}: no such checkpoint")
        data = path.read_bytes()
        name = str(path)
    if name.endswith(".safetensors"):
        return load_safetensors(data)
    obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    if not isinstance(obj, dict):
        raise DataError(f"{name}: not a state dict")
    return obj
