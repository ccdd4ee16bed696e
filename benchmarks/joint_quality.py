"""Quality of joint-stage recipes, side by side, from the tracker checkpoint of a pipeline run.

    python benchmarks/joint_quality.py [--run RUN_ID] [--seeds 1] [--threads 2]
        [--variant NAME='{"clips": {"batch_size": 8}, "optim": {"lr": 3e-4}}' ...]

Run it after ``make run``, against the same object store (``eval "$(sam3-pipeline store env)"``).
``--run`` names a pipeline run (``runs/<run id>/``; default: the newest one with a tracker checkpoint).
From that run it takes the tracker stage's last checkpoint (the start of every variant), the training
dataset it was trained on (images with their hard negatives, and videos) and the gold set its
evaluation used. Every variant is a set of overrides (``steps``, ``batch_size``, ``clips``,
``video_fraction``, ``optim``, ``seed``, ...) on the joint recipe of pipeline/configs/local.yaml, trained
by the trainer itself (``Trainer.train``: the joint stage's data stream, model, losses, optimizer) into
``runs/joint-quality-<token>-<n>/`` (a fresh token per invocation: benchmarks run side by side against
one store never write to each other's checkpoints) and evaluated as the pipeline evaluates a joint
checkpoint: on the gold images (cgF1 and the threshold-free diagnostics) and on the gold videos
(end-to-end video cgF1; tracking cgF1, masklet IoU and cross-object IoU with the true first-visible
masks as prompts). The tracker checkpoint itself is scored the same way in the same run, so each
variant reads as a change against its start.
Without ``--variant`` it compares the embedded default with clip batches as small as the image batches
(what the joint stage did before ``clips.batch_size``). ``--seeds N`` trains every variant N times (its
seed, then the next N - 1: other batches, other clips and prompts) and shows the mean with the lowest and
highest value: on 16 gold videos tracking cgF1 moves by about 2 points between seeds alone, more than
most recipe changes, so one run per variant says little. Prints the table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import tempfile
import time
from pathlib import Path
from statistics import mean
from typing import Any

import torch
from recipes import local_config, local_recipe

from components.errors import ConfigError
from components.evaluate.stage import evaluate_checkpoint, evaluate_video_checkpoint
from components.ingest.datasets import gold_annotations, gold_video_annotations
from components.schemas import evaluation_metrics_key, stage_prefix
from components.storage import ObjectStore
from components.train.checkpoint import checkpoint_config, step_folder
from components.train.config import TrainConfig
from components.train.trainer import Trainer

DEFAULT_VARIANTS: dict[str, dict[str, Any]] = {
    "embedded default": {},
    "clip batches of 2": {"clips": {"batch_size": None}},
}


def recipe(overrides: dict[str, Any], dataset: str, init: str, run_id: str) -> TrainConfig:
    """The local joint recipe with ``overrides`` (dicts merged one level deep), from ``init``."""
    steps = local_config().stage("joint").steps
    fields = {"checkpoint_every": steps, "keep_checkpoints": 1}  # one checkpoint: the one scored
    return local_recipe("joint", overrides, dataset=dataset, run_id=run_id, init=init, **fields)


def newest_run(store: ObjectStore) -> str:
    """The run id whose tracker stage committed a checkpoint last."""
    found = {}
    for key, _ in store.list_objects("runs/"):
        parts = key.split("/")
        if len(parts) == 5 and parts[2:] == ["tracker", "checkpoints", "latest.json"]:
            found[parts[1]] = store.get_json(key).get("saved_at", 0.0)
    if not found:
        raise ConfigError(f"no run in {store.uri('runs/')} has a tracker checkpoint: run `make run` first")
    return max(found, key=found.__getitem__)


def score(
    checkpoint: str, gold: str, truth: tuple[list[Path], Path], store: ObjectStore, out: str
) -> dict[str, float]:
    """The pipeline's evaluation of a video-stage checkpoint: image headline + diagnostics, video headline.

    ``truth``: the gold image annotation files and the gold video annotation file, fetched once per run.
    """
    image_truth, video_truth = truth
    videos = evaluate_video_checkpoint(checkpoint, gold, video_truth, store)
    images = evaluate_checkpoint(checkpoint, gold, image_truth, store, out)
    return {
        **{f"image_{k}": v for k, v in images.headline().items()},
        "recognition_auc": images.diagnostics["recognition_auc"],
        "top_detection_iou": images.diagnostics["top_detection_iou"],
        **videos.headline.metrics(),
    }


def compare(
    variants: dict[str, dict[str, Any]],
    seeds: int,
    *,
    init: str,
    dataset: str,
    gold: str,
    truth: tuple[list[Path], Path],
    store: ObjectStore,
    bench: str,
) -> dict[str, list[dict[str, float]]]:
    """The start checkpoint's scores, then each variant's for each of its ``seeds`` runs."""
    results = {"tracker (start)": [score(init, gold, truth, store, f"runs/{bench}-start/eval")]}
    trained_runs = 0
    for label, overrides in variants.items():
        first = recipe(dict(overrides), dataset, init, bench).seed
        for seed in range(first, first + seeds):
            cfg = recipe({**overrides, "seed": seed}, dataset, init, f"{bench}-{trained_runs}")
            trained_runs += 1
            started = time.perf_counter()
            pointer = Trainer(cfg, store).train()
            seconds = time.perf_counter() - started
            checkpoint = pointer.weights.rsplit("/", 1)[0]
            found = score(checkpoint, gold, truth, store, f"{cfg.prefix}/eval")
            results.setdefault(label, []).append({**found, "seed": seed, "train_s": seconds})
            print(f"  {label}, seed {seed}: trained {cfg.steps} steps in {seconds:.0f} s", flush=True)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default=None, help="pipeline run id (default: the newest with a tracker)")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=JSON")
    ap.add_argument("--seeds", type=int, default=1, help="runs per variant, seeds counted up from its own")
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1), help="torch threads")
    args = ap.parse_args()
    if args.seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, not {args.seeds}")
    torch.set_num_threads(args.threads)
    store = ObjectStore.from_env()
    run = args.run or newest_run(store)
    init = store.uri(step_folder(store.uri(f"{stage_prefix(run, 'tracker')}/checkpoints"), store))
    trained = checkpoint_config(init, store)
    if trained is None:
        raise ConfigError(f"{init} has no config.json: not a checkpoint of this pipeline's trainer")
    gold = store.get_json(evaluation_metrics_key(run, "tracker"))["gold"]
    data = local_config().data
    variants = dict(DEFAULT_VARIANTS)
    if args.variant:
        variants = {k: json.loads(v) for k, _, v in (s.partition("=") for s in args.variant)}
    bench = f"joint-quality-{secrets.token_hex(3)}"
    print(f"run {run}: joint variants from {init}, dataset {trained['dataset']}, gold {gold}", flush=True)
    print(f"variants train into {store.uri(f'runs/{bench}-<n>/')}", flush=True)
    with tempfile.TemporaryDirectory(prefix="joint-quality-") as tmp:
        truth = (gold_annotations(data, store, Path(tmp)), gold_video_annotations(data, store, Path(tmp)))
        results = compare(
            variants,
            args.seeds,
            init=init,
            dataset=trained["dataset"],
            gold=gold,
            truth=truth,
            store=store,
            bench=bench,
        )
    print_table(results)
    means = {label: {k: mean(r[k] for r in runs) for k in runs[0]} for label, runs in results.items()}
    print(json.dumps({"run": run, "init": init, "seeds": args.seeds, "results": means, "runs": results}))


COLUMNS = (
    ("image cgF1", "image_cgF1", ".2f"),
    ("rec. AUC", "recognition_auc", ".3f"),
    ("top IoU", "top_detection_iou", ".3f"),
    ("video cgF1", "video_cgF1", ".2f"),
    ("tracking cgF1", "tracking_cgF1", ".2f"),
    ("masklet IoU", "masklet_IoU", ".3f"),
    ("cross-obj IoU", "cross_object_IoU", ".3f"),
)


def cell(values: list[float], fmt: str) -> str:
    """The mean; with several runs also the lowest and highest value."""
    if len(values) == 1:
        return format(values[0], fmt)
    return f"{format(mean(values), fmt)} ({format(min(values), fmt)}-{format(max(values), fmt)})"


def print_table(results: dict[str, list[dict[str, float]]]) -> None:
    rows = {
        label: [cell([r[key] for r in runs], fmt) for _, key, fmt in COLUMNS]
        for label, runs in results.items()
    }
    first = max(len(label) for label in rows) + 2
    widths = [
        max(len(head), *(len(row[i]) for row in rows.values())) + 2 for i, (head, _, _) in enumerate(COLUMNS)
    ]
    print(
        "\n" + " " * first + "".join(f"{head:>{w}}" for (head, _, _), w in zip(COLUMNS, widths, strict=True))
    )
    for label, row in rows.items():
        print(f"{label:<{first}}" + "".join(f"{c:>{w}}" for c, w in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()
