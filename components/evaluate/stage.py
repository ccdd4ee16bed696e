"""Evaluate a stage's checkpoint on the gold dataset: predictions, metrics, report, all in the store.

Outputs go next to the checkpoint's stage: ``runs/<run_id>/<stage>/eval/``
(``predictions.json``, ``metrics.json`` written last with the SAM 3 metrics and
threshold-free diagnostics (components.evaluate.diagnostics), ``report.html``). The
step is deterministic for a checkpoint and gold set, so a finished evaluation
is reused.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.dataset import Dataset
from components.evaluate.cgf1 import evaluate_images
from components.evaluate.diagnostics import diagnostics
from components.evaluate.result import EvaluationResult, headline
from components.schemas import MediaRecord
from components.storage import ObjectStore

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]


@dataclass
class StageEvaluation:
    result: EvaluationResult
    metrics_uri: str
    report_html: str
    diagnostics: dict[str, float]

    def headline(self) -> dict[str, float]:
        return headline(self.result.to_json_dict())


def load_checkpoint_model(checkpoint: str, store: ObjectStore, size: str | None = None) -> tuple[Any, int]:
    """The model of a checkpoint (size from its config.json unless given), on GPU when there is one."""
    import torch

    from components.errors import ConfigError
    from components.model.builder import build_model
    from components.model.checkpoint import load_weights, normalize_state_dict
    from components.model.config import ModelConfig
    from components.train.checkpoint import checkpoint_config, read_weights

    saved = checkpoint_config(checkpoint, store) or {}
    size = size or saved.get("size")
    if size is None:
        raise ConfigError(f"{checkpoint} carries no training config: give the model size")
    model = build_model(size)
    load_weights(model, normalize_state_dict(read_weights(checkpoint, store)), checkpoint)
    if torch.cuda.is_available():
        model = model.cuda()
    return model, ModelConfig.preset(size).resolution


def image_records(dataset: str, store: ObjectStore, max_images: int | None = None) -> Iterator[MediaRecord]:
    """Image records with the queries that came from the source file (mined negatives carry no pair id)."""
    seen = 0
    for record in Dataset.open(dataset, store).records():
        if record.kind != "image":
            continue
        if max_images is not None and seen >= max_images:
            return
        seen += 1
        record.queries = [q for q in record.queries if q.origin_id.isdigit()]
        yield record


def predict_dataset(
    model: Any,
    resolution: int,
    records: list[MediaRecord],
    *,
    score_threshold: float = 0.05,
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    from components.model.predict import predict_records

    results: list[dict[str, Any]] = []
    for done, record in enumerate(records, 1):
        results.extend(
            predict_records(model, [record], resolution=resolution, score_threshold=score_threshold)
        )
        if progress:
            progress("predict", done, len(records))
    return results


def restrict_ground_truth(gt: Path, pair_ids: set[int], out: Path) -> Path:
    """The ground-truth file cut down to the evaluated pairs (when only some images were run)."""
    doc = json.loads(gt.read_text())
    doc["images"] = [im for im in doc["images"] if im["id"] in pair_ids]
    doc["annotations"] = [a for a in doc.get("annotations", []) if a["image_id"] in pair_ids]
    out.write_text(json.dumps(doc))
    return out


def evaluate_checkpoint(
    checkpoint: str,
    gold: str,
    ground_truth: list[Path],
    store: ObjectStore,
    out_prefix: str,
    *,
    max_images: int | None = None,
    examples: int = 4,
    progress: Progress | None = None,
) -> StageEvaluation:
    from components.evaluate.report import render_report

    metrics_key = f"{out_prefix}/metrics.json"
    records = list(image_records(gold, store, max_images))
    if store.exists(metrics_key):
        saved = store.get_json(metrics_key)
        if saved.get("checkpoint") == checkpoint and saved.get("gold") == gold:
            log.info("evaluation of %s already at %s", checkpoint, store.uri(metrics_key))
            result = EvaluationResult.model_validate(saved["result"])
            predictions = json.loads(store.get_bytes(f"{out_prefix}/predictions.json"))
            html = render_report(result, saved["diagnostics"], records, predictions, checkpoint, examples)
            return StageEvaluation(result, store.uri(metrics_key), html, saved["diagnostics"])
    model, resolution = load_checkpoint_model(checkpoint, store)
    predictions = predict_dataset(model, resolution, records, progress=progress)
    with tempfile.TemporaryDirectory(prefix="sam3-eval-") as tmp:
        pred_path = Path(tmp) / "predictions.json"
        pred_path.write_text(json.dumps(predictions))
        gt_paths = ground_truth
        if max_images is not None:
            pairs = {int(q.origin_id) for r in records for q in r.queries}
            gt_paths = [
                restrict_ground_truth(p, pairs, Path(tmp) / f"gt-{i}.json") for i, p in enumerate(gt_paths)
            ]
        result = evaluate_images(gt_paths, pred_path)
        found = diagnostics(gt_paths[0], predictions)
    html = render_report(result, found, records, predictions, checkpoint, examples)
    store.put_bytes(f"{out_prefix}/predictions.json", json.dumps(predictions).encode(), "application/json")
    store.put_bytes(f"{out_prefix}/report.html", html.encode(), "text/html")
    doc = {"checkpoint": checkpoint, "gold": gold, "result": result.to_json_dict(), "diagnostics": found}
    store.put_json(metrics_key, doc)  # last: the commit
    return StageEvaluation(result, store.uri(metrics_key), html, found)
