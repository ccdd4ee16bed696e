"""Quality of tracker training recipes against "copy the last mask", side by side on the synthetic videos.

    python benchmarks/tracker_quality.py [--steps 300] [--init CHECKPOINT] [--eval-every 100] [--threads 2]
        [--variant NAME='{"size": "tiny", "optim": {"lr": 3e-3}}' ...]

Without ``--variant`` it compares the embedded default (two-frame clips, eight per step, mask prompts)
with six-frame clips, two per step, mixed prompts. Every variant is a set of overrides (``size``,
``batch_size``, ``clips``, ``optim``, ``tracker_loss``) on the embedded default's tracker recipe
(pipeline/configs/local.yaml). The synthetic videos (the default's counts) are generated and ingested
into an embedded S3 server; each variant then trains in this process from ``--init`` (an image or video
checkpoint: a path, or an s3:// URI of the store in SAM3_S3_*; default: from scratch) on the same clip
sequence, with the trainer's own step, model, loss and optimizer. Every ``--eval-every`` steps the
tracker is prompted with each gold object's true mask on its first visible frame and scored: mean
masklet IoU, the share of objects above 0.5, video cgF1 with recognition given (``tracking cgF1``) and
the cross-object IoU (1: every object got the same mask, so the tracker is not following its prompt),
beside "copy the last mask" on the same prompts. Prints a line per evaluation, the table, then one JSON
line.
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
from recipes import local_config, local_recipe

from components.embedded_store import EmbeddedStore
from components.evaluate.stage import video_records
from components.evaluate.tracking import prompted_masklets
from components.evaluate.video import evaluate_videos
from components.ingest.ingest import Ingest
from components.ingest.sources import SourceSpec
from components.model.clips import ClipBatch, TrackerCriterion, records_to_clips
from components.model.config import ModelConfig
from components.model.loss import Criteria, build_criterion
from components.model.video import build_video_model, load_video_weights
from components.schemas import MediaRecord
from components.storage import ObjectStore
from components.synthetic import generate
from components.train.checkpoint import read_weights
from components.train.config import ClipSampling, TrainConfig
from components.train.optim import build_optimizer, trainable
from components.train.trainer import Distributed, Trainer

DEFAULT_VARIANTS: dict[str, dict[str, Any]] = {
    "embedded default": {},
    # the recipe before: longer clips, fewer per step, the default prompt mix (it learnt to segment every
    # object)
    "6-frame clips": {"batch_size": 2, "clips": {"frames": 6, "prompts": ClipSampling().prompts}},
}


def recipe(overrides: dict[str, Any], dataset: str, steps: int) -> TrainConfig:
    """The local tracker recipe with ``overrides`` (dicts are merged one level deep)."""
    return local_recipe("tracker", overrides, dataset=dataset, run_id="tracker-quality", steps=steps)


def score(
    model: Any, gold: list[MediaRecord], resolution: int, gt: Path, tmp: Path, copy_last: bool = False
) -> dict[str, float]:
    tracked = prompted_masklets(model, gold, resolution, copy_last=copy_last)
    path = tmp / "tracked.json"
    path.write_text(json.dumps(tracked.results))
    return {
        "masklet_IoU": tracked.masklet_iou,
        "over_50": sum(i > 0.5 for i in tracked.ious) / len(tracked.ious),
        "tracking_cgF1": evaluate_videos(gt, path, workers=1).cgF1,
        "cross_object_IoU": tracked.cross_object_iou,
    }


def train_and_evaluate(
    label: str,
    cfg: TrainConfig,
    init: dict[str, torch.Tensor] | None,
    store: ObjectStore,
    train: list[MediaRecord],
    gold: list[MediaRecord],
    gt: Path,
    tmp: Path,
    eval_every: int,
) -> list[dict[str, float]]:
    torch.manual_seed(cfg.seed)
    resolution = ModelConfig.preset(cfg.size).resolution
    model = build_video_model(cfg.size)
    if init is not None:
        load_video_weights(model, init, "--init")
    trainable(model, cfg.stage, cfg.optim)
    optimizer, scheduler = build_optimizer(model, cfg.optim, cfg.stage, cfg.steps)
    criterion = Criteria(build_criterion(cfg.loss), TrackerCriterion(cfg.tracker_loss))  # the trainer's
    rng = random.Random(cfg.seed)

    def clips() -> Iterator[ClipBatch]:
        while True:
            yield records_to_clips(rng.sample(train, cfg.batch_size), cfg.clips, resolution, rng)

    trainer, world = Trainer(cfg, store), Distributed(0, 1, 0, torch.device("cpu"))
    stream = clips()
    rows, seconds = [], 0.0
    for step in range(1, cfg.steps + 1):
        started = time.perf_counter()
        trainer.train_step(model, stream, criterion, nullcontext(), world)
        trainer.apply_update(model, optimizer, scheduler)
        seconds += time.perf_counter() - started
        if step % eval_every == 0 or step == cfg.steps:
            model.eval()
            row = {"step": step, **score(model, gold, resolution, gt, tmp), "s_per_step": seconds / step}
            model.train()
            rows.append(row)
            print(
                f"  {label} step {step}: masklet IoU {row['masklet_IoU']:.3f} "
                f"({100 * row['over_50']:.0f}% > 0.5), tracking cgF1 {row['tracking_cgF1']:.2f}, "
                f"cross-object IoU {row['cross_object_IoU']:.3f}",
                flush=True,
            )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--steps", type=int, default=None, help="optimizer steps per variant (default: local.yaml)"
    )
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--init", default=None, help="image or video checkpoint to start from (default: scratch)")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=JSON")
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1), help="torch threads")
    args = ap.parse_args()
    local = local_config()
    steps = args.steps or local.stage("tracker").steps
    syn = local.data.synthetic
    assert syn is not None, "local.yaml trains on the built-in synthetic data"
    variants = dict(DEFAULT_VARIANTS)
    if args.variant:
        variants = {k: json.loads(v) for k, _, v in (s.partition("=") for s in args.variant)}
    torch.set_num_threads(args.threads)
    init = None
    if args.init:
        init = read_weights(args.init, ObjectStore.from_env() if args.init.startswith("s3://") else None)
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        with EmbeddedStore(tmp / "home") as settings:
            store = ObjectStore(settings)
            synth = tmp / "synth"
            generate(synth, images=1, gold_images=1, videos=syn.videos, gold_videos=syn.gold_videos)
            train_uri = Ingest("tq", [SourceSpec.parse(f"video={synth / 'video_train'}")], store).run().uri
            gold_uri = Ingest("tq-gold", [SourceSpec.parse(f"video={synth / 'video_gold'}")], store).run().uri
            train, gold = video_records(train_uri, store), video_records(gold_uri, store)
            gt = synth / "video_gold" / "annotations.json"
            copied = score(None, gold, 0, gt, tmp, copy_last=True)  # the true masks: no model resolution
            results = {}
            for label, overrides in variants.items():
                cfg = recipe(dict(overrides), train_uri, steps)
                print(
                    f"{label}: {steps} steps of {cfg.size}, {cfg.batch_size} clips of {cfg.clips.frames}",
                    flush=True,
                )
                results[label] = train_and_evaluate(
                    label, cfg, init, store, train, gold, gt, tmp, args.eval_every
                )
    print(
        f"\n{'variant':<22}{'steps':>6}{'masklet IoU':>13}{'> 0.5':>7}{'tracking cgF1':>15}"
        f"{'cross-object IoU':>18}{'s/step':>8}"
    )
    for label, rows in results.items():
        r = rows[-1]
        print(
            f"{label:<22}{r['step']:>6}{r['masklet_IoU']:>13.3f}{100 * r['over_50']:>6.0f}%"
            f"{r['tracking_cgF1']:>15.2f}{r['cross_object_IoU']:>18.3f}{r['s_per_step']:>8.3f}"
        )
    r = copied
    print(
        f"{'copy last mask':<22}{'':>6}{r['masklet_IoU']:>13.3f}{100 * r['over_50']:>6.0f}%"
        f"{r['tracking_cgF1']:>15.2f}{r['cross_object_IoU']:>18.3f}"
    )
    print(json.dumps({"steps": steps, "variants": results, "copy_last_mask": copied}))


if __name__ == "__main__":
    main()
