"""How far apart a weak and a good model score on the synthetic gold split.

    python benchmarks/synthetic_baselines.py [--images 100] [--seed 0]

Writes the gold split of `data synth`, then scores hand-made predictors that see
the scenes' true objects but ignore part of each noun phrase, with the project's
evaluator: the oracle (every instance of the concept), colour-blind, texture-blind,
size-blind, shape-only ("circle" for "small striped red circle"), and "no
recognition" (every object, for every phrase). Prints one table and a JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from components.evaluate import evaluate_images
from components.synthetic import generate
from components.synthetic.baselines import PREDICTORS, predictions


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "synth"
        generate(
            out, images=1, gold_images=args.images, videos=0, gold_videos=0, size=args.size, seed=args.seed
        )
        gt = out / "gold" / "annotations.json"
        for name, ignore in PREDICTORS.items():
            pred = Path(tmp) / f"{name}.json"
            pred.write_text(json.dumps(predictions(args.images, args.size, args.seed, ignore)))
            r = evaluate_images([gt], pred, workers=1).model_dump()
            results[name] = {k: round(float(r[k]), 3) for k in ("cgF1", "IL_MCC", "pmF1")}
    print(f"{'predictor':<16} {'cgF1':>7} {'IL_MCC':>7} {'pmF1':>7}", file=sys.stderr)
    for name, r in results.items():
        print(f"{name:<16} {r['cgF1']:>7.1f} {r['IL_MCC']:>7.3f} {r['pmF1']:>7.1f}", file=sys.stderr)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
