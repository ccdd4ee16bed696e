"""A stage's learning curve: what each step's loss and learning rate were, and in-training evaluations.

Rank 0 keeps the history and writes it whole to ``runs/<run_id>/<stage>/history.json`` at every
checkpoint, before the checkpoint's pointer moves; a resumed job reads it back and drops the steps after
the checkpoint it resumes from, so the curve never shows steps that were trained twice. The evaluate
step's report draws it.

Layout::

    {"stage": "pretrain",
     "steps": [{"step": 1, "loss": {"total": .., ...}, "lr": {"vision": ..}, "seconds": ..}, ...],
     "evaluations": [{"step": 100, "recognition_AUC": .., "by_length": {"1": .., ...}}, ...]}
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from components.schemas import stage_prefix
from components.storage import ObjectStore

log = logging.getLogger(__name__)


def history_key(run_id: str, stage: str) -> str:
    return f"{stage_prefix(run_id, stage)}/history.json"


@dataclass
class TrainingHistory:
    stage: str
    steps: list[dict[str, Any]] = field(default_factory=list)
    evaluations: list[dict[str, Any]] = field(default_factory=list)

    def add_step(self, step: int, losses: dict[str, float], lrs: dict[str, float], seconds: float) -> None:
        self.steps.append(
            {
                "step": step,
                "loss": {k: round(float(v), 6) for k, v in losses.items()},
                "lr": {k: float(v) for k, v in lrs.items()},
                "seconds": round(seconds, 4),
            }
        )

    def add_evaluation(self, step: int, values: dict[str, Any]) -> None:
        self.evaluations.append({"step": step, **values})

    def to_json(self) -> dict[str, Any]:
        return {"stage": self.stage, "steps": self.steps, "evaluations": self.evaluations}

    def save(self, store: ObjectStore, run_id: str) -> None:
        store.put_json(history_key(run_id, self.stage), self.to_json())

    @classmethod
    def resume(cls, store: ObjectStore, run_id: str, stage: str, step: int) -> TrainingHistory:
        """The saved history up to ``step`` (the checkpoint a job resumes from); empty if there is none."""
        saved = read_history(store, run_id, stage)
        if saved is None:
            return cls(stage)
        return cls(
            stage,
            [s for s in saved.get("steps", []) if s.get("step", 0) <= step],
            [e for e in saved.get("evaluations", []) if e.get("step", 0) <= step],
        )


def read_history(store: ObjectStore, run_id: str, stage: str) -> dict[str, Any] | None:
    """The stage's saved history, or None when it has none (a stage trained before histories existed)."""
    key = history_key(run_id, stage)
    if not store.exists(key):
        return None
    doc = store.get_json(key)
    return doc if isinstance(doc, dict) else None
