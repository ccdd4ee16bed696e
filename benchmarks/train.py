"""Training throughput, measured side by side in one run.

    python benchmarks/train.py [--steps 30] [--batch-size 2]

1. samples/s of the tiny detector stage with 1 and with 2 torchrun processes (gloo, one thread per rank, as
   one GPU per rank would be), from the trainer's own per-step timings (first steps skipped); goal >= 1.6x.
2. data-loader throughput (batches/s the loader alone produces, one worker) against the trainer's demand
   (batches/s one rank consumes), and the share of step time spent waiting for data; goals >= 3x and < 5%.
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from components.embedded_store import EmbeddedStore
from components.ingest.ingest import Ingest
from components.ingest.sources import SourceSpec
from components.storage import ObjectStore
from components.synthetic import generate
from components.train.config import TrainConfig

STEP = re.compile(r"step (\d+)/\d+ loss \S+ \(.*\) ([0-9.]+)s/step, data wait ([0-9.]+)s")


def run_stage(cfg: TrainConfig, nproc: int, env: dict[str, str], log: Path) -> list[tuple[float, float]]:
    torchrun = str(Path(sys.executable).parent / "torchrun")
    with open(log, "wb") as out:
        subprocess.run(
            [
                torchrun,
                "--standalone",
                "--nproc-per-node",
                str(nproc),
                "-m",
                "components.train.main",
                "--config-json",
                cfg.model_dump_json(),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=True,
            timeout=1800,
        )
    return [(float(s), float(w)) for _, s, w in STEP.findall(log.read_text())]


def loader_rate(cfg: TrainConfig, batches: int) -> float:
    from components.model.config import ModelConfig
    from components.train.data import batch_loader

    it = iter(batch_loader(cfg, 0, 1, 0, ModelConfig.preset(cfg.size).resolution))
    next(it)  # start-up (worker spawn, dataset open) is not throughput
    t = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--images", type=int, default=64)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        with EmbeddedStore(home / "home") as settings:
            env = {**os.environ, "OMP_NUM_THREADS": "1", "SAM3_LOG_LEVEL": "INFO"}
            for line in settings.env_lines():
                k, _, v = line.removeprefix("export ").partition("=")
                env[k] = v
                os.environ[k] = v
            generate(home / "synth", images=args.images, videos=0, gold_videos=0, seed=1)
            uri = (
                Ingest("bench", [SourceSpec.parse(f"hq={home / 'synth' / 'train'}")], ObjectStore(settings))
                .run()
                .uri
            )
            skip = 3
            rates, waits = {}, {}
            for nproc in (1, 2):
                cfg = TrainConfig(
                    stage="detector",
                    dataset=uri,
                    run_id=f"bench{nproc}",
                    steps=args.steps,
                    batch_size=args.batch_size,
                    log_every=1,
                    checkpoint_every=10_000,
                    data_workers=1,
                )
                steps = run_stage(cfg, nproc, env, home / f"train{nproc}.log")[skip:]
                step_s = statistics.median(s for s, _ in steps)
                rates[nproc] = nproc * args.batch_size / step_s
                waits[nproc] = sum(w for _, w in steps) / sum(s for s, _ in steps)
                print(
                    f"{nproc} process(es): {rates[nproc]:.2f} samples/s, median step {step_s:.3f}s, "
                    f"data wait {100 * waits[nproc]:.1f}% of step time",
                    file=sys.stderr,
                )
            os.environ["OMP_NUM_THREADS"] = "1"
            demand = rates[1] / args.batch_size  # batches/s one rank consumes
            supply = loader_rate(cfg.model_copy(update={"data_workers": 1}), batches=20)
    print(
        json.dumps(
            {
                "samples_per_s_1proc": round(rates[1], 2),
                "samples_per_s_2proc": round(rates[2], 2),
                "scaling_2_over_1": round(rates[2] / rates[1], 2),
                "loader_batches_per_s": round(supply, 2),
                "trainer_batches_per_s": round(demand, 2),
                "loader_over_demand": round(supply / demand, 2),
                "data_wait_share_1proc": round(waits[1], 4),
                "data_wait_share_2proc": round(waits[2], 4),
            }
        )
    )


if __name__ == "__main__":
    main()
