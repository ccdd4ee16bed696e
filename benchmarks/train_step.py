"""Training-step cost of the embedded default's CPU-size savings, side by side, as ratios.

    python benchmarks/train_step.py [--steps 30] [--rounds 2] [--threads 2]

The tiny presets turn activation checkpointing off, and that now reaches the transformer encoder,
decoder and mask head too (Meta's encoder and decoder assert it in training; see
components.model.compat), so backward no longer recomputes their forward passes. AdamW runs fused (one
kernel for all parameters) where PyTorch has the kernel. This benchmark trains stages of
pipeline/configs/local.yaml for ``--steps`` steps with the trainer itself, on the synthetic data ingested
as ``make run`` does, once per mode and round, the modes alternating. The tiny presets' mask head also
reads only the neck's two coarser feature maps (``mask_levels: 2``: masks at 32x32 at 112 px, not 64x64):

- ``detector``: ``recompute`` (activation checkpointing on, as the released model trains, per-tensor
  AdamW; 64x64 masks), ``no recompute`` (off everywhere, per-tensor AdamW; 64x64), ``both`` (off, fused
  AdamW; 64x64), ``32x32 masks`` (off, fused, two mask levels: the default)
- ``pretrain`` (no encoder, decoder or mask head; the tiny trunk never recomputed): ``per-tensor`` and
  ``fused`` AdamW

It prints each mode's seconds over the first mode's (the median over rounds; each time is the whole
``Trainer.train`` call, model build and final checkpoint included, so per-step savings are larger).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from train_quality import model_overrides, prepare_data, recipe

from components.embedded_store import EmbeddedStore
from components.errors import Sam3Error
from components.storage import ObjectStore
from components.train.trainer import Trainer

_FULL_MASKS = {"mask_levels": None}
MODES: dict[str, dict[str, tuple[dict[str, Any], bool]]] = {
    "detector": {
        "recompute": ({"activation_checkpointing": True, **_FULL_MASKS}, False),
        "no recompute": ({"activation_checkpointing": False, **_FULL_MASKS}, False),
        "both": ({"activation_checkpointing": False, **_FULL_MASKS}, True),
        "32x32 masks": ({"activation_checkpointing": False}, True),
    },
    "pretrain": {
        "per-tensor": ({"activation_checkpointing": False}, False),
        "fused": ({"activation_checkpointing": False}, True),
    },
}
"""stage -> mode -> (model preset fields changed for the run, fused AdamW)."""


@contextmanager
def adamw(fused: bool) -> Iterator[None]:
    """``torch.optim.AdamW`` with ``fused`` forced, until the block ends."""
    original = torch.optim.AdamW

    def build(*args: Any, **kwargs: Any) -> torch.optim.Optimizer:
        return original(*args, **{**kwargs, "fused": fused})

    torch.optim.AdamW = build  # type: ignore[misc,assignment]
    try:
        yield
    finally:
        torch.optim.AdamW = original  # type: ignore[misc]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    times: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="train-step-") as name:
        tmp = Path(name)
        with EmbeddedStore(tmp / "home") as settings:
            store = ObjectStore(settings)
            os.environ.update(settings.env())
            data = prepare_data(tmp, store, 400, 100, 0)
            for n in range(args.rounds):
                for stage, modes in MODES.items():
                    for mode, (fields, fused) in modes.items():
                        overrides = {"steps": args.steps, "checkpoint_every": args.steps}
                        run_id = f"step-{n}-{stage}-{mode.replace(' ', '-')}"
                        cfg = recipe(stage, overrides, dataset=data.train, run_id=run_id, scale=1.0)
                        with model_overrides(fields), adamw(fused):
                            torch.manual_seed(0)
                            started = time.perf_counter()
                            Trainer(cfg, store).train()
                            times.setdefault((stage, mode), []).append(time.perf_counter() - started)
                        print(f"round {n} {stage} {mode}: {times[stage, mode][-1]:.1f} s", file=sys.stderr)
    print(f"{args.steps} steps per run, {args.rounds} rounds, {args.threads} threads; time / first mode's")
    for stage, modes in MODES.items():
        before = times[stage, next(iter(modes))]
        for mode in modes:
            ratios = [t / b for t, b in zip(times[stage, mode], before, strict=True)]
            print(f"  {stage:<9} {mode:<13} {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    try:
        main()
    except Sam3Error as exc:
        print(f"train_step: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
