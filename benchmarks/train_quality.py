"""Quality of the embedded default's image stages, side by side with variants, on the synthetic data.

    python benchmarks/train_quality.py [--seeds 1] [--threads 2] [--seed 0] [--images 400] [--gold-images 100]
        [--variant NAME='{"detector": {"optim": {"lr": 5e-4}}}' ...] [--steps-scale 0.1]

The synthetic data (the default's 400 training and 100 gold images, seed ``--seed``) is generated,
ingested into an embedded S3 server and given 30 mined hard negatives per image, as ``make run`` does.
Each variant then trains the image stages of pipeline/configs/local.yaml in order, each from the previous
one's last checkpoint, with the trainer itself (``Trainer.train``: each stage's data stream, model,
losses, optimizer and checkpoints, in this process): ``pretrain`` (stage 0, vision-text alignment of the
detector's backbone; it scores gold recognition AUC at every checkpoint) -> ``detector`` -> ``presence``.
Each training goes into its own ``runs/quality-<token>-<n>/`` (a fresh token per invocation), and each
stage's last checkpoint is scored as the pipeline scores it, into that run's ``<stage>/eval/``: the
pretrain stage by the recognition AUC of its presence logits over the gold pairs (overall and by phrase
length in words), the detector and presence stages by cgF1, IL_MCC and pmF1 and the threshold-free
diagnostics: recognition AUC (of each pair's best detection score), top-detection mask IoU, max score.

A variant is JSON: ``{"<stage>": {TrainConfig overrides}, ...}`` (a mapping value such as ``optim`` is
merged into the stage's recipe one level deep, anything else replaces), and ``{"pretrain": null}``
trains no stage 0: the detector starts from random weights, as before stage 0 existed. A ``"model"``
entry overrides fields of the model presets while the variant trains and is scored (in this process),
e.g. ``{"model": {"query_grid": false, "decoder_locality": 0}}``: the decoder's default start values. Without
``--variant`` the embedded default is compared with that ("no pretrain", its detector's encoders
trained rather than frozen): what stage 0 buys the image stages. ``--steps-scale F`` multiplies every
stage's steps and checkpoint interval by F (rounded, at least 1; warmup steps are not scaled) for a
quick look. ``--seeds N`` trains every variant N times (every
stage's seed, then the next N - 1) and shows the mean with the lowest and highest value.

Prints, per variant, the pretrain stage's recognition curve (gold AUC at each checkpoint, from its
training history) and one row per stage (training seconds: the whole ``Trainer.train`` call, checkpoints
and in-training evaluation included); then the reference predictors (true masks, some words of the
phrase ignored); then one JSON line with everything, each stage's loss at its last step included.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from statistics import mean
from typing import Any

import torch
from pydantic import ValidationError
from recipes import local_config, local_recipe

from components.embedded_store import EmbeddedStore
from components.errors import ConfigError, Sam3Error
from components.evaluate.stage import evaluate_alignment_checkpoint, evaluate_checkpoint, score_references
from components.ingest.ingest import Ingest
from components.ingest.sources import SourceSpec
from components.model.config import PRESETS, ModelConfig
from components.negatives.negatives import mine_negatives
from components.schemas import evaluation_prefix
from components.storage import ObjectStore
from components.synthetic import generate
from components.synthetic.baselines import all_predictions
from components.train.config import ALIGN_STAGE, TrainConfig
from components.train.history import read_history
from components.train.trainer import Trainer

IMAGE_STAGES = (ALIGN_STAGE, "detector", "presence")
BENCHMARK_KEYS = frozenset(("stage", "dataset", "eval_dataset", "run_id", "init"))
"""TrainConfig fields this benchmark sets for every stage: a variant may not."""
MODEL_KEY = "model"
WORDS = ("1", "2", "3", "4")  # phrase lengths shown in the recognition curve

DEFAULT_VARIANTS: dict[str, dict[str, Any]] = {
    "embedded default": {},
    # no stage 0: the detector from random weights, its encoders trained (frozen, they would stay random)
    "no pretrain": {ALIGN_STAGE: None, "detector": {"optim": {"frozen": []}}},
}


@dataclass
class Data:
    train: str  # the mined training dataset (images with hard negatives, and the ontology)
    gold: str
    truth: Path  # the gold annotations file


def check_variant(label: str, variant: Any) -> dict[str, Any]:
    """The variant, or ConfigError naming what is wrong with it."""
    if not isinstance(variant, dict):
        raise ConfigError(f"variant {label!r}: expected a JSON object of stages, not {variant!r}")
    unknown = sorted(set(variant) - set(IMAGE_STAGES) - {MODEL_KEY})
    if unknown:
        raise ConfigError(
            f"variant {label!r}: {unknown} are not image stages; use {list(IMAGE_STAGES)} (or {MODEL_KEY!r})"
        )
    try:
        overridden_presets(variant.get(MODEL_KEY) or {})
    except (ValidationError, TypeError) as exc:
        raise ConfigError(f"variant {label!r}: {MODEL_KEY}: {exc}") from None
    for stage, overrides in variant.items():
        if stage == MODEL_KEY:
            continue
        if overrides is None and stage == ALIGN_STAGE:
            continue
        if not isinstance(overrides, dict):
            raise ConfigError(f"variant {label!r}: {stage} takes TrainConfig overrides (a JSON object)")
        owned = sorted(BENCHMARK_KEYS & overrides.keys())
        if owned:
            raise ConfigError(f"variant {label!r}: {stage}: {owned} are set by the benchmark")
        try:
            recipe(stage, overrides, dataset="s3://check/datasets/check/0", run_id="check", scale=1.0)
        except ConfigError as exc:
            raise ConfigError(f"variant {label!r}: {exc}") from None
    return variant


def overridden_presets(fields: dict[str, Any]) -> dict[str, ModelConfig]:
    """Every model preset with ``fields`` changed (pydantic's ValidationError names a bad field)."""
    return {name: ModelConfig.model_validate(p.model_dump() | fields) for name, p in PRESETS.items()}


@contextmanager
def model_overrides(fields: dict[str, Any]) -> Iterator[None]:
    """Every model preset with ``fields`` changed, until the block ends."""
    saved = dict(PRESETS)
    try:
        PRESETS.update(overridden_presets(fields))
        yield
    finally:
        PRESETS.update(saved)


def parse_variants(specs: list[str]) -> dict[str, dict[str, Any]]:
    variants = {}
    for spec in specs:
        label, _, text = spec.partition("=")
        try:
            variants[label] = check_variant(label, json.loads(text))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"variant {label!r}: not valid JSON: {exc}") from None
    return variants


def recipe(
    stage: str,
    overrides: dict[str, Any],
    *,
    dataset: str,
    run_id: str,
    scale: float,
    init: str | None = None,
    eval_dataset: str | None = None,
    seed_offset: int = 0,
) -> TrainConfig:
    """The stage's local recipe with the variant's ``overrides``, its steps and checkpoint interval scaled."""
    fields = {"eval_dataset": eval_dataset, "data_workers": 0, "metrics_port": 0}
    try:
        cfg = local_recipe(stage, overrides, dataset=dataset, run_id=run_id, init=init, **fields)
        scaled = {k: max(1, round(getattr(cfg, k) * scale)) for k in ("steps", "checkpoint_every")}
        return TrainConfig.model_validate(cfg.model_dump() | scaled | {"seed": cfg.seed + seed_offset})
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ConfigError(f"{stage}.{'.'.join(map(str, err['loc']))}: {err['msg']}") from None


def score(cfg: TrainConfig, checkpoint: str, data: Data, store: ObjectStore) -> dict[str, Any]:
    """The pipeline's evaluation of a stage's checkpoint, written under the benchmark run's own prefix."""
    history = read_history(store, cfg.run_id, cfg.stage)
    out = evaluation_prefix(cfg.run_id, cfg.stage)
    if cfg.align:
        found = evaluate_alignment_checkpoint(checkpoint, data.gold, store, out, history=history)
        recognition = found.recognition or {}
        return {"recognition_auc": recognition["recognition_AUC"], "by_length": recognition["by_length"]}
    evaluation = evaluate_checkpoint(checkpoint, data.gold, [data.truth], store, out, history=history)
    keep = (
        "recognition_auc",
        "top_detection_iou",
        "top_detection_box_iou",
        "top_detection_mask_box_iou",
        "max_score",
    )
    return {**evaluation.headline(), **{k: evaluation.diagnostics[k] for k in keep}}


def train_variant(
    label: str,
    variant: dict[str, Any],
    seed_offset: int,
    run_id: str,
    data: Data,
    store: ObjectStore,
    scale: float,
) -> dict[str, Any]:
    """Train the image stages in order, each from the previous one's checkpoint, and score each."""
    stages: dict[str, dict[str, Any]] = {}
    init: str | None = None
    for stage in IMAGE_STAGES:
        if stage in variant and variant[stage] is None:
            continue
        cfg = recipe(
            stage,
            variant.get(stage, {}),
            dataset=data.train,
            run_id=run_id,
            scale=scale,
            init=init,
            eval_dataset=data.gold if stage == ALIGN_STAGE else None,
            seed_offset=seed_offset,
        )
        print(
            f"variant {label}: stage {stage}, {cfg.steps} steps (seed {cfg.seed})",
            file=sys.stderr,
            flush=True,
        )
        started = time.perf_counter()
        pointer = Trainer(cfg, store).train()
        seconds = time.perf_counter() - started
        init = store.uri(pointer.key)
        history = read_history(store, run_id, stage) or {}
        last = history.get("steps", [{}])[-1]
        stages[stage] = {
            "steps": cfg.steps,
            "train_s": seconds,
            "last_loss": last.get("loss", {}),
            **score(cfg, init, data, store),
        }
        if stage == ALIGN_STAGE:
            stages[stage]["curve"] = history.get("evaluations", [])
    return {"run_id": run_id, "seed_offset": seed_offset, "stages": stages}


def cell(values: list[float], fmt: str) -> str:
    """The mean; when runs differ also the lowest and highest value; "-" when there is none."""
    if not values:
        return "-"
    if min(values) == max(values):
        return format(values[0], fmt)
    return f"{format(mean(values), fmt)} ({format(min(values), fmt)}-{format(max(values), fmt)})"


def print_table(head: list[str], rows: list[list[str]], indent: str = "  ") -> None:
    """The first column left-aligned, the others right-aligned, each as wide as its widest cell."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) + 2 for i, h in enumerate(head)]
    for line in (head, *rows):
        rest = "".join(f"{c:>{w}}" for c, w in zip(line[1:], widths[1:], strict=True))
        print(f"{indent}{line[0]:<{widths[0]}}{rest}")


def print_curve(runs: list[dict[str, Any]]) -> None:
    """Gold recognition AUC at each pretrain checkpoint: all pairs, then by phrase length in words."""
    curves = [r["stages"][ALIGN_STAGE]["curve"] for r in runs if ALIGN_STAGE in r["stages"]]
    if not curves:
        print("  pretrain recognition curve: no stage 0")
        return
    steps = sorted({e["step"] for curve in curves for e in curve})
    at = [{e["step"]: e for e in curve} for curve in curves]
    rows = []
    for step in steps:
        found = [c[step] for c in at if step in c]
        row = [str(step), cell([e["recognition_AUC"] for e in found], ".3f")]
        row += [cell([e["by_length"][n] for e in found if n in e["by_length"]], ".3f") for n in WORDS]
        rows.append(row)
    print("  pretrain recognition curve (gold AUC)")
    print_table(["step", "all", *(f"{n} word{'s' * (n != '1')}" for n in WORDS)], rows, indent="    ")


STAGE_COLUMNS = (
    ("steps", "steps", "d"),
    ("train s", "train_s", ".0f"),
    ("cgF1", "cgF1", ".2f"),
    ("IL_MCC", "IL_MCC", ".3f"),
    ("pmF1", "pmF1", ".2f"),
    ("rec. AUC", "recognition_auc", ".3f"),
    ("top IoU", "top_detection_iou", ".3f"),
    ("top box IoU", "top_detection_box_iou", ".3f"),
    ("its mask's box", "top_detection_mask_box_iou", ".3f"),
    ("max score", "max_score", ".3f"),
)


def print_stages(runs: list[dict[str, Any]]) -> None:
    rows = []
    for stage in IMAGE_STAGES:
        scored = [r["stages"][stage] for r in runs if stage in r["stages"]]
        if scored:
            rows.append([stage, *(cell([s[k] for s in scored if k in s], f) for _, k, f in STAGE_COLUMNS)])
    print_table(["stage", *(h for h, _, _ in STAGE_COLUMNS)], rows)


def prepare_data(tmp: Path, store: ObjectStore, images: int, gold_images: int, seed: int) -> Data:
    """Synthetic data in the store as ``make run`` makes it: ingested, 30 hard negatives mined per image."""
    synth = tmp / "synth"
    generate(synth, images=images, gold_images=gold_images, videos=0, gold_videos=0, seed=seed)
    train = Ingest("quality", [SourceSpec.parse(f"syn={synth / 'train'}")], store).run().uri
    gold = Ingest("quality-gold", [SourceSpec.parse(f"hq={synth / 'gold'}")], store).run().uri
    mined, _, _ = mine_negatives(train, 30, synth / "ontology.json", store)
    return Data(mined, gold, synth / "gold" / "annotations.json")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=JSON")
    ap.add_argument("--steps-scale", type=float, default=1.0, help="multiplies every stage's steps")
    ap.add_argument("--seeds", type=int, default=1, help="runs per variant, seeds counted up from its own")
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1), help="torch threads")
    ap.add_argument("--images", type=int, default=400)
    ap.add_argument("--gold-images", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0, help="the synthetic data's seed")
    args = ap.parse_args()
    if args.seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, not {args.seeds}")
    if args.steps_scale <= 0:
        raise ConfigError(f"--steps-scale must be positive, not {args.steps_scale}")
    missing = [s for s in IMAGE_STAGES if s not in local_config().stages()]
    if missing:
        raise ConfigError(f"the embedded default has no {missing} stage: nothing to compare")
    variants = parse_variants(args.variant) if args.variant else dict(DEFAULT_VARIANTS)
    torch.set_num_threads(args.threads)
    bench = f"quality-{secrets.token_hex(3)}"
    results: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="train-quality-") as name:
        tmp = Path(name)
        with EmbeddedStore(tmp / "home") as settings:
            store = ObjectStore(settings)
            os.environ.update(settings.env())  # the trainer's data stream opens the store named there
            data = prepare_data(tmp, store, args.images, args.gold_images, args.seed)
            predictions = all_predictions(args.gold_images, 224, args.seed)
            references = score_references([data.truth], predictions, tmp)
            trained = 0
            for label, variant in variants.items():
                for offset in range(args.seeds):
                    with model_overrides(variant.get(MODEL_KEY) or {}):
                        run = train_variant(
                            label, variant, offset, f"{bench}-{trained}", data, store, args.steps_scale
                        )
                    results.setdefault(label, []).append(run)
                    trained += 1
    for label, runs in results.items():
        print(f"\n{label}" + (f" ({args.seeds} seeds)" if args.seeds > 1 else ""))
        print_curve(runs)
        print_stages(runs)
    print("\nreferences (true masks)")
    rows = [
        [label, f"{r['cgF1']:.2f}", f"{r['IL_MCC']:.3f}", f"{r['pmF1']:.2f}"]
        for label, r in sorted(references.items(), key=lambda item: -item[1]["cgF1"])
    ]
    print_table(["predictor", "cgF1", "IL_MCC", "pmF1"], rows)
    data_doc = {"images": args.images, "gold_images": args.gold_images, "seed": args.seed}
    summary = {"data": data_doc, "steps_scale": args.steps_scale, "seeds": args.seeds}
    print(json.dumps({**summary, "variants": results, "references": references}))


if __name__ == "__main__":
    try:
        main()
    except Sam3Error as exc:
        print(f"train_quality: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
