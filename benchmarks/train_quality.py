"""Quality of tiny-model training recipes, side by side on the synthetic data.

    python benchmarks/train_quality.py [--steps 660] [--variant NAME='{"optim": {"lr": 5e-4}}' ...]

Every variant is a set of training-config overrides (``optim``, ``loss``, ``positive_fraction``,
``max_queries_per_image``, ``batch_size``, ``size``) on the embedded default's detector recipe
(pipeline/configs/local.yaml). The synthetic data (default size) is generated, ingested into an
embedded S3 server and given 30 mined hard negatives per image, as ``make run`` does; then each variant
trains from scratch in this process, on the same batch sequence, for the same number of steps, with the
trainer's own model, loss and optimizer, and is evaluated on the gold split with the project's
evaluator. The table shows cgF1, IL_MCC, pmF1, the threshold-free diagnostics (recognition AUC,
top-detection mask IoU) and the reference predictors (true masks, words of the phrase ignored), so a
recipe change is judged by what it does to recognition and localisation, not only by a cgF1 that may
stay 0. Prints the table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from recipes import local_recipe

from components.dataset import Dataset
from components.embedded_store import EmbeddedStore
from components.evaluate import evaluate_images
from components.evaluate.diagnostics import diagnostics
from components.evaluate.result import headline
from components.evaluate.stage import image_records, score_references
from components.ingest.ingest import Ingest
from components.ingest.sources import SourceSpec
from components.model.batch import ModelBatch, records_to_batch
from components.model.builder import build_model
from components.model.config import ModelConfig
from components.model.loss import build_criterion
from components.model.predict import predict_records
from components.negatives.negatives import mine_negatives
from components.schemas import MediaRecord
from components.storage import ObjectStore
from components.synthetic import generate
from components.synthetic.baselines import all_predictions
from components.train.config import TrainConfig
from components.train.optim import build_optimizer, trainable
from components.train.trainer import Distributed, Trainer

DEFAULT_VARIANTS = {
    "embedded default": {},
    "constant lr": {"optim": {"warmup_steps": 100, "lr": 1e-3}, "_schedule": "constant"},
    "lr 5e-4": {"optim": {"lr": 5e-4}},
}


def recipe(overrides: dict[str, Any], dataset: str, steps: int) -> tuple[TrainConfig, str]:
    """The local detector recipe with ``overrides``, and its LR schedule ("released" or "constant")."""
    schedule = overrides.pop("_schedule", "released")
    return local_recipe("detector", overrides, dataset=dataset, run_id="quality", steps=steps), schedule


def train_and_evaluate(
    cfg: TrainConfig,
    schedule: str,
    store: ObjectStore,
    train: list[MediaRecord],
    gold: list[MediaRecord],
    gt: Path,
    tmp: Path,
) -> dict[str, float]:
    torch.manual_seed(cfg.seed)
    resolution = ModelConfig.preset(cfg.size).resolution
    model = build_model(cfg.size)
    trainable(model, cfg.stage)
    optimizer, scheduler = build_optimizer(model, cfg.optim, cfg.stage, cfg.steps)
    if schedule == "constant":  # warmup, then the peak learning rate to the end
        warmup = max(1, cfg.optim.warmup_steps)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup))
    criterion = build_criterion(cfg.loss)
    rng = random.Random(cfg.seed)

    def batches() -> Iterator[ModelBatch]:
        while True:
            yield records_to_batch(
                rng.sample(train, cfg.batch_size),
                resolution=resolution,
                max_queries_per_image=cfg.max_queries_per_image,
                exemplar_prob=cfg.exemplar_prob,
                positive_fraction=cfg.positive_fraction,
                rng=rng,
            )

    # the trainer's own step (forward, loss, backward over grad_accumulation micro-batches), one CPU process
    trainer, world = Trainer(cfg, store), Distributed(0, 1, 0, torch.device("cpu"))
    stream = batches()
    started = time.perf_counter()
    for step in range(cfg.steps):
        trainer.train_step(model, stream, criterion, nullcontext(), world)
        trainer.apply_update(model, optimizer, scheduler)
        if (step + 1) % 100 == 0:
            print(f"  step {step + 1}/{cfg.steps}", flush=True)
    seconds = time.perf_counter() - started
    predictions = predict_records(model, gold, resolution=resolution, score_threshold=0.05)
    path = tmp / "predictions.json"
    path.write_text(json.dumps(predictions))
    found = headline(evaluate_images([gt], path, workers=1).to_json_dict())
    return {**found, **diagnostics(gt, predictions), "s_per_step": seconds / cfg.steps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=660, help="optimizer steps per variant (local.yaml: 660)")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=JSON")
    ap.add_argument("--images", type=int, default=400)
    ap.add_argument("--gold-images", type=int, default=100)
    args = ap.parse_args()
    variants = dict(DEFAULT_VARIANTS)
    if args.variant:
        variants = {k: json.loads(v) for k, _, v in (s.partition("=") for s in args.variant)}
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        with EmbeddedStore(tmp / "home") as settings:
            store = ObjectStore(settings)
            synth = tmp / "synth"
            generate(synth, images=args.images, gold_images=args.gold_images, videos=0, gold_videos=0)
            train_uri = Ingest("quality", [SourceSpec.parse(f"syn={synth / 'train'}")], store).run().uri
            gold_uri = Ingest("quality-gold", [SourceSpec.parse(f"hq={synth / 'gold'}")], store).run().uri
            mined, _, _ = mine_negatives(train_uri, 30, synth / "ontology.json", store)
            train = [r for r in Dataset.open(mined, store).records() if r.kind == "image"]
            gold = list(image_records(gold_uri, store))
            gt = synth / "gold" / "annotations.json"
            references = score_references([gt], all_predictions(args.gold_images, 224, 0), tmp)
            rows = {}
            for label, overrides in variants.items():
                cfg, schedule = recipe(dict(overrides), mined, args.steps)
                print(f"{label}: {args.steps} steps of {cfg.size}, batch {cfg.batch_size}", flush=True)
                rows[label] = train_and_evaluate(cfg, schedule, store, train, gold, gt, tmp)
    print(f"\n{'variant':<22}{'cgF1':>7}{'IL_MCC':>8}{'pmF1':>7}{'rec.AUC':>9}{'top IoU':>9}{'s/step':>8}")
    for label, r in rows.items():
        print(
            f"{label:<22}{r['cgF1']:>7.1f}{r['IL_MCC']:>8.3f}{r['pmF1']:>7.1f}"
            f"{r['recognition_auc']:>9.3f}{r['top_detection_iou']:>9.3f}{r['s_per_step']:>8.3f}"
        )
    for label, r in sorted(references.items(), key=lambda item: -item[1]["cgF1"]):
        print(f"{'ref: ' + label:<22}{r['cgF1']:>7.1f}{r['IL_MCC']:>8.3f}{r['pmF1']:>7.1f}")
    print(json.dumps({"steps": args.steps, "variants": rows, "references": references}))


if __name__ == "__main__":
    main()
