#!/usr/bin/env bash
# One-shot GPU check of the full model (run on a CUDA machine from the repo root, after `make install`):
# builds the released architecture, runs bf16 training steps, prints samples/s, step time, peak memory and
# GPU utilisation as one JSON line per batch size.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
for bs in 1 4; do
  PYTHONPATH=. "$PY" benchmarks/gpu_check.py --size full --batch-size "$bs" --steps 6 --warmup 2
done
