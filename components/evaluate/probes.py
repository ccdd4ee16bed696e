"""Evaluation probes: the same checkpoint on the same gold pairs, prompted or scored another way.

SAM 3's ablations measure two things that need no other training: exemplar prompts at inference (the
phrase plus k ground-truth boxes of the pair, k = 1..4, against text alone) and the score without the
presence factor. A probe is one such pass; its result goes to its own file beside the stage's
``metrics.json``, ``eval/probes/<name>.json`` (``{checkpoint, gold, probe, headline, diagnostics,
result}``), so the stage's headline, its gate and the runs that share the checkpoint stay as they are,
and two runs asking different probes never write the same object. A probe already scored for the same
checkpoint and gold set is reused.

Exemplars go to positive pairs only: a negative pair has no instance to show, so its prompt stays the
phrase. IL_MCC with exemplars is therefore partly given away (a box says the concept is present); the
published table reports cgF1.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from components.storage import ObjectStore

log = logging.getLogger(__name__)

MAX_EXEMPLARS = 4


class Probe(BaseModel):
    """One way of prompting or scoring; ``name`` is its file's and its table row's name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    exemplars: int = Field(default=0, ge=0, le=MAX_EXEMPLARS, description="true boxes given with the phrase")
    presence: bool = Field(default=True, description="off: scores leave the presence probability out")

    @property
    def name(self) -> str:
        parts = [f"exemplars-{self.exemplars}"] if self.exemplars else []
        return "-".join(parts + ([] if self.presence else ["no-presence"])) or "text"


def probe_key(out_prefix: str, probe: Probe) -> str:
    return f"{out_prefix}/probes/{probe.name}.json"


def evaluate_probes(
    checkpoint: str,
    gold: str,
    ground_truth: list[Path],
    store: ObjectStore,
    out_prefix: str,
    probes: Sequence[Probe],
    *,
    max_images: int | None = None,
    size: str | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, dict[str, float]]:
    """Score each probe not already scored for this checkpoint and gold set; probe name -> headline."""
    from components.evaluate.cgf1 import evaluate_images
    from components.evaluate.diagnostics import diagnostics
    from components.evaluate.result import headline
    from components.evaluate.stage import (
        image_records,
        load_checkpoint_model,
        restrict_ground_truth,
        trained_with_presence,
    )
    from components.model.predict import predict_records

    found: dict[str, dict[str, float]] = {}
    todo = []
    for probe in probes:
        key = probe_key(out_prefix, probe)
        saved = store.get_json(key) if store.exists(key) else {}
        if saved.get("checkpoint") == checkpoint and saved.get("gold") == gold:
            found[probe.name] = saved["headline"]
        else:
            todo.append(probe)
    if not todo:
        return found
    records = list(image_records(gold, store, max_images))
    model, resolution = load_checkpoint_model(checkpoint, store, size)
    presence = trained_with_presence(checkpoint, store)  # a head that never trained scores nothing
    with tempfile.TemporaryDirectory(prefix="sam3-probe-") as tmp:
        gt_paths = ground_truth
        if max_images is not None:
            pairs = {int(q.origin_id) for r in records for q in r.queries}
            gt_paths = [
                restrict_ground_truth(p, pairs, Path(tmp) / f"gt-{i}.json") for i, p in enumerate(gt_paths)
            ]
        for probe in todo:
            predictions: list[dict[str, Any]] = []
            for done, record in enumerate(records, 1):
                predictions.extend(
                    predict_records(
                        model,
                        [record],
                        resolution=resolution,
                        score_threshold=0.05,
                        presence=probe.presence and presence,
                        exemplars=probe.exemplars,
                    )
                )
                if progress:
                    progress(f"probe {probe.name}", done, len(records))
            path = Path(tmp) / f"{probe.name}.json"
            path.write_text(json.dumps(predictions))
            result = evaluate_images(gt_paths, path).to_json_dict()
            scores = headline(result)
            doc = {
                "checkpoint": checkpoint,
                "gold": gold,
                "probe": probe.model_dump(),
                "headline": scores,
                "diagnostics": diagnostics(gt_paths[0], predictions),
                "result": result,
            }
            store.put_json(probe_key(out_prefix, probe), doc)
            found[probe.name] = scores
            log.info("probe %s of %s: cgF1 %.2f", probe.name, checkpoint, scores["cgF1"])
    return found
