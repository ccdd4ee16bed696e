"""Evaluate a stage's checkpoint on the gold dataset: predictions, metrics, report, all in the store.

Outputs go next to the checkpoint's stage: ``runs/<run_id>/<stage>/eval/``
(``predictions.json``, ``metrics.json`` written last with the SAM 3 metrics,
threshold-free diagnostics (components.evaluate.diagnostics) and the scores of
any reference predictors, ``report.html``). The step is deterministic for a
checkpoint and gold set, so a finished evaluation is reused.

The pretrain stage (stage 0) trains the detector's backbone for vision-text
alignment and makes no detections: its ``metrics.json`` holds a ``recognition``
section instead (the AUC of its presence logits over the gold pairs, overall
and by phrase length; components.evaluate.recognition), and no predictions.

Reference predictors make the gap to a good model visible: for the synthetic
gold set they are hand-made predictors with the true masks that ignore some
words of the phrase (components.synthetic.baselines), so a reader sees where
between "no recognition" and the oracle the trained model lands.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.dataset import Dataset
from components.errors import DataError
from components.evaluate.cgf1 import evaluate_images
from components.evaluate.diagnostics import diagnostics
from components.evaluate.result import (
    EvaluationResult,
    TrackingScores,
    VideoEvaluation,
    VideoHeadline,
    headline,
    recognition_headline,
)
from components.progress import Progress
from components.schemas import MediaRecord
from components.storage import ObjectStore

log = logging.getLogger(__name__)


@dataclass
class StageEvaluation:
    result: EvaluationResult | None  # None: the pretrain stage, which makes no detections
    metrics_uri: str
    report_html: str
    diagnostics: dict[str, float]
    references: dict[str, dict[str, float]]
    video: VideoEvaluation | None = None  # video stages: the gold videos' evaluation
    recognition: dict[str, Any] | None = None  # the pretrain stage's (components.evaluate.recognition)

    def headline(self) -> dict[str, float]:
        """The gated numbers: the image headline (and the video one), or the pretrain stage's recognition."""
        if self.result is None:
            return recognition_headline(self.recognition or {})
        return headline(self.result.to_json_dict()) | (self.video.headline.metrics() if self.video else {})


def checkpoint_size(checkpoint: str, store: ObjectStore, size: str | None = None) -> str:
    """The model size a checkpoint was trained at (its config.json), unless given."""
    from components.errors import ConfigError
    from components.train.checkpoint import checkpoint_config

    saved = checkpoint_config(checkpoint, store) or {}
    size = size or saved.get("size")
    if size is None:
        raise ConfigError(f"{checkpoint} carries no training config: give the model size")
    return str(size)


def load_checkpoint_model(
    checkpoint: str, store: ObjectStore, size: str | None = None, *, video: bool = False
) -> tuple[Any, int]:
    """The model of a checkpoint (size from its config.json unless given) in eval mode, on GPU when there
    is one: the image model, or with ``video`` the video model (detector + tracker) of a video stage."""
    from components.model.builder import build_model
    from components.model.video import build_video_model, load_model_weights
    from components.train.checkpoint import read_weights

    size = checkpoint_size(checkpoint, store, size)
    model = build_video_model(size) if video else build_model(size)
    load_model_weights(model, read_weights(checkpoint, store), checkpoint)
    return _ready(model, size)


def load_alignment_model(checkpoint: str, store: ObjectStore, size: str | None = None) -> tuple[Any, int]:
    """A pretrain checkpoint's alignment model (components.model.align), every key loaded, as above."""
    from components.model.align import build_alignment_model
    from components.model.checkpoint import load_weights
    from components.train.checkpoint import read_weights

    size = checkpoint_size(checkpoint, store, size)
    model = build_alignment_model(size)
    load_weights(model, read_weights(checkpoint, store), checkpoint)
    return _ready(model, size)


def _ready(model: Any, size: str) -> tuple[Any, int]:
    """The model in eval mode, on GPU when there is one, and its input resolution."""
    import torch

    from components.model.config import ModelConfig

    if torch.cuda.is_available():
        model = model.cuda()
    return model.eval(), ModelConfig.preset(size).resolution


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


def trained_with_presence(checkpoint: str, store: ObjectStore) -> bool:
    """Whether the checkpoint's stage trained its presence head (TrainConfig.presence_head; foreign
    checkpoints, such as the released one, did): if not, its scores leave the presence factor out."""
    from components.train.checkpoint import checkpoint_config

    return bool((checkpoint_config(checkpoint, store) or {}).get("presence_head", True))


def predict_dataset(
    model: Any,
    resolution: int,
    records: list[MediaRecord],
    *,
    score_threshold: float = 0.05,
    progress: Progress | None = None,
    presence: bool = True,
) -> list[dict[str, Any]]:
    from components.model.predict import predict_records

    results: list[dict[str, Any]] = []
    for done, record in enumerate(records, 1):
        results.extend(
            predict_records(
                model, [record], resolution=resolution, score_threshold=score_threshold, presence=presence
            )
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
    references: Mapping[str, list[dict[str, Any]]] | None = None,
    video: Callable[[], VideoEvaluation] | None = None,
    history: dict[str, Any] | None = None,
    size: str | None = None,
    base: dict[str, Any] | None = None,
) -> StageEvaluation:
    """Predict, score and report; ``references``: name -> predictions (SA-Co results) scored beside.

    ``video``: a video stage's video evaluation (``evaluate_video_checkpoint``), stored beside the
    image metrics in the same metrics.json. ``history``: the stage's training history
    (components.train.history), drawn in the report. ``size``: the model size (default: the checkpoint's
    config.json). ``base``: the ``result`` of the run's base on the same gold set, in the report beside.
    """
    from components.evaluate.report import render_report

    metrics_key = f"{out_prefix}/metrics.json"
    records = list(image_records(gold, store, max_images))
    if store.exists(metrics_key):
        saved = store.get_json(metrics_key)
        reusable = video is None or "video" in saved
        if saved.get("checkpoint") == checkpoint and saved.get("gold") == gold and reusable:
            log.info("evaluation of %s already at %s", checkpoint, store.uri(metrics_key))
            result = EvaluationResult.model_validate(saved["result"])
            predictions = json.loads(store.get_bytes(f"{out_prefix}/predictions.json"))
            found, scored = saved["diagnostics"], saved.get("references", {})
            html = render_report(
                result, found, records, predictions, checkpoint, examples, scored, history=history, base=base
            )
            videos = VideoEvaluation.model_validate(saved["video"]) if "video" in saved else None
            return StageEvaluation(result, store.uri(metrics_key), html, found, scored, videos)
    model, resolution = load_checkpoint_model(checkpoint, store, size)
    presence = trained_with_presence(checkpoint, store)
    predictions = predict_dataset(model, resolution, records, progress=progress, presence=presence)
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
        scored = score_references(gt_paths, references or {}, Path(tmp))
    del model
    videos = video() if video is not None else None
    html = render_report(
        result, found, records, predictions, checkpoint, examples, scored, history=history, base=base
    )
    store.put_bytes(f"{out_prefix}/predictions.json", json.dumps(predictions).encode(), "application/json")
    store.put_bytes(f"{out_prefix}/report.html", html.encode(), "text/html")
    doc = {
        "checkpoint": checkpoint,
        "gold": gold,
        "result": result.to_json_dict(),
        "diagnostics": found,
        "references": scored,
    }
    if videos is not None:
        doc["video"] = videos.to_json_dict()
    store.put_json(metrics_key, doc)  # last: the commit
    return StageEvaluation(result, store.uri(metrics_key), html, found, scored, videos)


def evaluate_alignment_checkpoint(
    checkpoint: str,
    gold: str,
    store: ObjectStore,
    out_prefix: str,
    *,
    max_images: int | None = None,
    history: dict[str, Any] | None = None,
) -> StageEvaluation:
    """The pretrain stage: recognition of its alignment model on the gold image pairs, and the report.

    ``metrics.json`` (written last, reused for the same checkpoint and gold set) holds ``recognition``:
    ``recognition_AUC``, ``by_length`` (words -> AUC) and the pair counts. ``history``: the stage's
    training history (its loss and in-training recognition curves), drawn in the report.
    """
    from components.evaluate.recognition import recognition_metrics
    from components.evaluate.report import render_recognition_report

    metrics_key = f"{out_prefix}/metrics.json"
    if store.exists(metrics_key):
        saved = store.get_json(metrics_key)
        if saved.get("checkpoint") == checkpoint and saved.get("gold") == gold and "recognition" in saved:
            log.info("evaluation of %s already at %s", checkpoint, store.uri(metrics_key))
            recognition = saved["recognition"]
            html = render_recognition_report(recognition, checkpoint, history=history)
            return StageEvaluation(None, store.uri(metrics_key), html, {}, {}, recognition=recognition)
    model, resolution = load_alignment_model(checkpoint, store)
    recognition = recognition_metrics(model, list(image_records(gold, store, max_images)), resolution)
    del model
    html = render_recognition_report(recognition, checkpoint, history=history)
    store.put_bytes(f"{out_prefix}/report.html", html.encode(), "text/html")
    store.put_json(metrics_key, {"checkpoint": checkpoint, "gold": gold, "recognition": recognition})  # last
    return StageEvaluation(None, store.uri(metrics_key), html, {}, {}, recognition=recognition)


def video_records(dataset: str, store: ObjectStore) -> list[MediaRecord]:
    return [r for r in Dataset.open(dataset, store).records() if r.kind == "video"]


def evaluate_video_checkpoint(
    checkpoint: str, gold: str, ground_truth: Path, store: ObjectStore, progress: Progress | None = None
) -> VideoEvaluation:
    """Video metrics of a video stage's checkpoint on the gold videos (components.evaluate.tracking).

    ``headline``: end to end (detector + tracker) ``video_cgF1``, ``video_IL_MCC``, ``video_pmF1``;
    the tracker alone, prompted with the true first-visible masks: ``tracking_cgF1``, the mean
    ``masklet_IoU`` of the tracked objects and their ``cross_object_IoU`` (1: the same mask for every
    object; components.evaluate.tracking). ``references``: the same three for "copy the last mask".
    """
    from components.evaluate.tracking import detect_and_track, prompted_masklets
    from components.evaluate.video import evaluate_videos

    model, resolution = load_checkpoint_model(checkpoint, store, video=True)
    records = video_records(gold, store)
    if not records:
        raise DataError(f"{gold} holds no videos to evaluate the tracker on")

    def score(predictions: list[dict[str, Any]], tmp: Path, name: str) -> EvaluationResult:
        path = tmp / f"{name}.json"
        path.write_text(json.dumps(predictions))
        return evaluate_videos(ground_truth, path, workers=1)

    with tempfile.TemporaryDirectory(prefix="sam3-video-eval-") as folder:
        tmp = Path(folder)
        end_to_end = score(detect_and_track(model, records, resolution, progress=progress), tmp, "detected")
        tracked = prompted_masklets(model, records, resolution, progress=progress)
        copied = prompted_masklets(None, records, resolution, copy_last=True)
        tracking = score(tracked.results, tmp, "tracked")
        copying = score(copied.results, tmp, "copied")
    e2e = headline(end_to_end.to_json_dict())
    return VideoEvaluation(
        result=end_to_end,
        headline=VideoHeadline(
            video_cgF1=e2e["cgF1"],
            video_IL_MCC=e2e["IL_MCC"],
            video_pmF1=e2e["pmF1"],
            tracking_cgF1=tracking.cgF1,
            masklet_IoU=tracked.masklet_iou,
            cross_object_IoU=tracked.cross_object_iou,
        ),
        references={
            "copy last mask": TrackingScores(
                tracking_cgF1=copying.cgF1,
                masklet_IoU=copied.masklet_iou,
                cross_object_IoU=copied.cross_object_iou,
            )
        },
        videos=len(records),
        tracked_objects=len(tracked.ious),
    )


def score_references(
    gt_paths: list[Path], references: Mapping[str, list[dict[str, Any]]], tmp: Path
) -> dict[str, dict[str, float]]:
    """Headline metrics of each reference predictor on the same ground truth (the model's evaluated pairs).

    Predictions for pairs outside the ground truth (images not evaluated) are dropped first.
    """
    if not references:
        return {}
    pairs = {im["id"] for im in json.loads(gt_paths[0].read_text())["images"]}
    scored = {}
    for i, (name, predictions) in enumerate(references.items()):
        path = tmp / f"reference-{i}.json"
        path.write_text(json.dumps([p for p in predictions if p["image_id"] in pairs]))
        scored[name] = headline(evaluate_images(gt_paths, path, workers=1).to_json_dict())
    return scored
