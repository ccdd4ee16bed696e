"""Do a backbone's features locate objects? A dense box probe on the feature level the detector reads.

    python benchmarks/box_probe.py CHECKPOINT TRAIN GOLD [--steps 400] [--batch 16] [--threads 1]

CHECKPOINT is a pretrain (stage 0) checkpoint, TRAIN and GOLD dataset URIs of the configured store
(``s3://<bucket>/datasets/<name>/<version>``; a run's ``<stage>/eval/metrics.json`` names its gold set and
each checkpoint's ``config.json`` its training set).

The backbone stays frozen. A small class-agnostic head (three 3x3 convolutions) on its features predicts,
at every feature cell, a box as distances to four edges; every cell whose centre lies inside an object's
mask learns that object's box (GIoU + 5 x L1, AdamW lr 1e-3, ``--batch`` images per step). Every 100 steps
each gold object is boxed from the cell it covers most and compared with its true box (IoU; "small":
objects under 20 px wide in a 224-px image). The same probe on the same trunk with its random start
weights runs beside it, as the control.

Against the detector's own top-detection box IoU (``top_detection_box_iou`` in a stage's
``metrics.json``) this separates the two parts that must learn boxes: if the probe boxes objects well
from the frozen features in a few hundred steps while the detector does not, the features carry the
extents and the detector's decoder is what learns slowly.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pycocotools import mask as mask_utils
from torch import nn
from torchvision.ops import box_iou, generalized_box_iou_loss

from components.errors import Sam3Error
from components.evaluate.stage import checkpoint_size, image_records, load_alignment_model
from components.model.align import build_alignment_model
from components.model.align_batch import _coverage
from components.model.batch import decode_image
from components.storage import ObjectStore

SMALL_PX = 20  # width in a 224-px image
Object = tuple[np.ndarray, np.ndarray, np.ndarray]  # box (x0, y0, x1, y1 normalised), cover, cells inside


def objects(record: Any, grid: int) -> list[Object]:
    """Each distinct non-crowd instance of an image: its box, its cover of the grid, the cells inside it."""
    seen: set[str] = set()
    out = []
    centres = ((np.arange(grid) + 0.5) / grid * record.height).astype(int)
    across = ((np.arange(grid) + 0.5) / grid * record.width).astype(int)
    for query in record.queries:
        for instance in query.instances:
            counts = instance.masks[0] if instance.masks else None
            if not counts or instance.crowd or counts in seen:
                continue
            seen.add(counts)
            mask = mask_utils.decode({"size": [record.height, record.width], "counts": counts.encode()})
            ys, xs = np.nonzero(mask)
            if not len(ys):
                continue
            box = np.array(
                [
                    xs.min() / record.width,
                    ys.min() / record.height,
                    (xs.max() + 1) / record.width,
                    (ys.max() + 1) / record.height,
                ],
                np.float32,
            )
            out.append((box, _coverage(record, counts, grid), mask[centres][:, across] > 0))
    return out


class BoxHead(nn.Module):
    """Per cell: a box as softplus distances from the cell's centre to its four edges."""

    def __init__(self, channels: int, grid: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, 64, 3, padding=1),
            nn.GroupNorm(8, 64),
            nn.ReLU(),
            nn.Conv2d(64, 64, 3, padding=1),
            nn.GroupNorm(8, 64),
            nn.ReLU(),
            nn.Conv2d(64, 4, 3, padding=1),
        )
        centre = (torch.arange(grid) + 0.5) / grid
        self.register_buffer("cy", centre[:, None].expand(grid, grid).clone())
        self.register_buffer("cx", centre[None, :].expand(grid, grid).clone())

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        d = F.softplus(self.net(features)) * 0.25
        cx, cy = self.get_buffer("cx"), self.get_buffer("cy")
        return torch.stack([cx - d[:, 0], cy - d[:, 1], cx + d[:, 2], cy + d[:, 3]], -1)


def probe(
    model: Any, resolution: int, train: list[Any], gold: list[Any], steps: int, batch: int
) -> list[tuple[int, float, float]]:
    """Train the head on frozen features; (step, gold IoU, small-object IoU) every 100 steps."""
    for p in model.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        probe_features = model.image_features(decode_image(train[0], resolution)[None])
    grid = probe_features.shape[-1]
    head = BoxHead(probe_features.shape[1], grid)
    opt = torch.optim.AdamW(head.parameters(), lr=1e-3, weight_decay=0.05)
    known = {r.media_id: objects(r, grid) for r in [*train, *gold]}
    rng = random.Random(0)
    curve = []
    for step in range(1, steps + 1):
        records = [rng.choice(train) for _ in range(batch)]
        with torch.no_grad():
            features = model.image_features(torch.stack([decode_image(r, resolution) for r in records]))
        boxes = head(features)
        pred, target = [], []
        for i, r in enumerate(records):
            for box, cover, inside in known[r.media_id]:
                ys, xs = np.nonzero(inside)
                if not len(ys):  # smaller than a cell: the cell it covers most
                    ys, xs = (np.array([k]) for k in np.unravel_index(np.argmax(cover), cover.shape))
                pred.append(boxes[i, ys, xs])
                target.append(torch.from_numpy(box).expand(len(ys), 4))
        if not pred:
            continue
        p, t = torch.cat(pred), torch.cat(target)
        loss = generalized_box_iou_loss(p, t, reduction="mean") + 5 * F.l1_loss(p, t)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == steps:
            curve.append((step, *score(model, head, resolution, gold, known)))
    return curve


def score(
    model: Any, head: BoxHead, resolution: int, gold: list[Any], known: dict[str, list[Object]]
) -> tuple[float, float]:
    """Mean box IoU of the gold objects, each boxed from the cell it covers most (all; small ones)."""
    ious, small = [], []
    with torch.no_grad():
        for start in range(0, len(gold), 25):
            chunk = gold[start : start + 25]
            boxes = head(model.image_features(torch.stack([decode_image(r, resolution) for r in chunk])))
            for i, r in enumerate(chunk):
                for box, cover, _ in known[r.media_id]:
                    y, x = np.unravel_index(np.argmax(cover), cover.shape)
                    iou = float(box_iou(boxes[i, y, x][None], torch.from_numpy(box)[None]))
                    ious.append(iou)
                    if (box[2] - box[0]) * 224 < SMALL_PX:
                        small.append(iou)
    return float(np.mean(ious)), float(np.mean(small)) if small else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("train")
    ap.add_argument("gold")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    try:
        store = ObjectStore.from_env()
        trained, resolution = load_alignment_model(args.checkpoint, store)
        train = list(image_records(args.train, store))
        gold = list(image_records(args.gold, store))
    except Sam3Error as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    size = checkpoint_size(args.checkpoint, store, None)
    torch.manual_seed(0)
    control = build_alignment_model(size).eval()
    print(f"dense box probe, {len(train)} training and {len(gold)} gold images, frozen features of {size}")
    rows = {}
    for label, model in (("checkpoint", trained.cpu()), ("random start (control)", control)):
        started = time.perf_counter()
        rows[label] = probe(model, resolution, train, gold, args.steps, args.batch)
        print(f"  {label}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    print(f"  {'step':>6}" + "".join(f"  {label:>28}" for label in rows))
    for i, (step, *_) in enumerate(rows["checkpoint"]):
        cells = [f"{c[i][1]:.3f} (small {c[i][2]:.3f})" for c in rows.values()]
        print(f"  {step:>6}" + "".join(f"  {c:>28}" for c in cells))


if __name__ == "__main__":
    main()
