"""GPU check of the full-size model: build it, run a few bf16 training steps, print what sizes a job.

    python benchmarks/gpu_check.py [--steps 6] [--batch-size 2] [--size full]

Prints one JSON line: samples/s, step time, peak GPU memory, mean GPU utilisation (NVML, sampled during the
timed steps). Needs a CUDA device; synthetic images stand in for data (no object store needed).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time

import torch


def gpu_utilisation_sampler(stop: threading.Event, out: list[float]) -> None:
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device())
    except Exception as exc:
        print(f"no NVML: {exc}", file=sys.stderr)
        return
    while not stop.is_set():
        out.append(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu / 100.0)
        time.sleep(0.1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--size", default="full")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("gpu_check needs a CUDA device")

    from components.model.batch import records_to_batch
    from components.model.builder import build_model
    from components.model.config import ModelConfig
    from components.model.loss import build_criterion, forward_and_loss
    from components.train.config import LossWeights, OptimConfig
    from components.train.optim import build_optimizer
    from tests.model.records import synthetic_record

    t0 = time.perf_counter()
    torch.cuda.set_device(0)
    model = build_model(args.size).cuda()
    build_s = time.perf_counter() - t0
    resolution = ModelConfig.preset(args.size).resolution
    criterion = build_criterion(LossWeights())
    optimizer, scheduler = build_optimizer(model, OptimConfig(lr=1e-4, warmup_steps=0))
    rng = random.Random(0)
    records = [synthetic_record(i, size=512) for i in range(args.batch_size * (args.steps + args.warmup))]
    step_times: list[float] = []
    util: list[float] = []
    stop = threading.Event()
    sampler = threading.Thread(target=gpu_utilisation_sampler, args=(stop, util), daemon=True)
    for step in range(args.steps + args.warmup):
        chunk = records[step * args.batch_size : (step + 1) * args.batch_size]
        batch = records_to_batch(
            chunk, resolution=resolution, max_queries_per_image=8, exemplar_prob=0.0, rng=rng
        ).to(torch.device("cuda"))
        if step == args.warmup:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            sampler.start()
        t = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss, _ = forward_and_loss(model, batch, criterion)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        if step >= args.warmup:
            step_times.append(time.perf_counter() - t)
    stop.set()
    step_s = sum(step_times) / len(step_times)
    print(
        json.dumps(
            {
                "device": torch.cuda.get_device_name(),
                "size": args.size,
                "parameters": sum(p.numel() for p in model.parameters()),
                "resolution": resolution,
                "batch_size": args.batch_size,
                "build_seconds": round(build_s, 1),
                "step_seconds": round(step_s, 3),
                "samples_per_second": round(args.batch_size / step_s, 2),
                "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
                "gpu_utilisation_mean": round(sum(util) / len(util), 2) if util else None,
                "loss_finite": bool(torch.isfinite(loss).item()),
            }
        )
    )


if __name__ == "__main__":
    main()
