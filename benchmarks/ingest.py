"""Ingest throughput as a ratio to a raw upload of the same bytes to the same server, side by side.

    python benchmarks/ingest.py [--images 300] [--side 1024] [--rounds 3]

Makes an SA-Co-style input folder (JPEG images, several noun-phrase pairs and
RLE masks per image), starts the embedded S3 server in a temporary home, then
alternates, per round: (a) a raw upload of every input file as its own object
(4 upload threads, as `mc cp -r` does), (b) a full ingest of the same folder (validation,
mask checks, image checks, Parquet encoding, upload), once with the default
structural image check and once decoding every image. The figures are bytes/s
of (b) over bytes/s of (a), the median of per-round ratios; the goal is >= 0.8.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from components.embedded_store import EmbeddedStore
from components.ingest.ingest import Ingest, IngestOptions
from components.ingest.sources import SourceSpec
from components.storage import ObjectStore


def make_inputs(folder: Path, images: int, side: int, seed: int = 0) -> int:
    """Photo-like JPEGs (smooth gradients plus grain) with 3 pairs x 4 masks each; returns total bytes."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True)
    h, w = (side * 3) // 4, side
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    pairs, anns = [], []
    for i in range(images):
        base = rng.uniform(0, 255, 3)
        img = base + 60 * np.sin(xx[..., None] / rng.uniform(20, 80) + rng.uniform(0, 6, 3))
        img += 40 * np.cos(yy[..., None] / rng.uniform(20, 80)) + rng.normal(0, 6, (h, w, 3))
        buf = io.BytesIO()
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
        fn = f"{i:06d}.jpg"
        (folder / "images" / fn).write_bytes(buf.getvalue())
        for p in range(3):
            pid = 3 * i + p + 1
            pairs.append(
                {
                    "id": pid,
                    "file_name": fn,
                    "text_input": f"thing {p}",
                    "width": w,
                    "height": h,
                    "is_instance_exhaustive": True,
                }
            )
            for k in range(4 if p < 2 else 0):
                x0, y0 = int(rng.integers(0, w - 64)), int(rng.integers(0, h - 64))
                m = np.zeros((h, w), np.uint8, order="F")
                m[y0 : y0 + 60, x0 : x0 + 60] = 1
                r = mask_utils.encode(m)
                anns.append(
                    {
                        "id": len(anns) + 1,
                        "image_id": pid,
                        "iscrowd": 0,
                        "area": 3600,
                        "bbox": [x0 / w, y0 / h, 60 / w, 60 / h],
                        "segmentation": {"size": [h, w], "counts": r["counts"].decode()},
                    }
                )
                del k
    (folder / "annotations.json").write_text(json.dumps({"images": pairs, "annotations": anns}))
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def raw_upload(store: ObjectStore, folder: Path, prefix: str) -> None:
    files = [f for f in sorted(folder.rglob("*")) if f.is_file()]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda f: store.put_file(f"{prefix}/{f.relative_to(folder).as_posix()}", f), files))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--side", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in"
        total = make_inputs(src, args.images, args.side)
        print(f"inputs: {args.images} images, {total / 1e6:.1f} MB", file=sys.stderr)
        with EmbeddedStore(Path(tmp) / "home") as settings:
            store = ObjectStore(settings)
            times: dict[str, list[float]] = {"raw": [], "structure": [], "decode": []}
            for r in range(-args.warmup, args.rounds):  # negative rounds warm imports and caches, not counted
                t0 = time.perf_counter()
                raw_upload(store, src, f"raw/{r}")
                took = {"raw": time.perf_counter() - t0}
                for check in ("structure", "decode"):
                    t0 = time.perf_counter()
                    opts = IngestOptions(image_check=check)  # type: ignore[arg-type]
                    Ingest(f"bench-{check}{r}", [SourceSpec.parse(f"hq={src}")], store, opts).run()
                    took[check] = time.perf_counter() - t0
                line = ", ".join(f"{k} {v:.2f}s" for k, v in took.items())
                print(f"round {r}: {line}", file=sys.stderr)
                if r >= 0:
                    for k, v in took.items():
                        times[k].append(v)
    raw = statistics.median(times["raw"])
    result = {
        "images": args.images,
        "side": args.side,
        "input_mb": round(total / 1e6, 1),
        "raw_upload_mb_s": round(total / 1e6 / raw, 1),
        **{
            f"ratio_{k}": round(
                statistics.median(a / b for a, b in zip(times["raw"], times[k], strict=True)), 2
            )
            for k in ("structure", "decode")
        },
        "rounds": args.rounds,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
