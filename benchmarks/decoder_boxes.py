"""Where does a detector lose its boxes: in the decoder's regression, or in ranking its queries?

    python benchmarks/decoder_boxes.py CHECKPOINT GOLD [--threads 1]

CHECKPOINT is a checkpoint of an image stage (detector, presence, joint), GOLD a dataset URI of the
configured store (``s3://<bucket>/datasets/<name>/<version>``; a run's ``<stage>/eval/metrics.json``
names its gold set).

For every object of every positive gold pair it follows the decoder's boxes through its layers: the
queries' start boxes (the reference boxes the first layer reads), then each layer's output. Per layer:

- ``best query``: the box IoU of the query that overlaps the object most (the best the decoder's boxes
  could do if the scores picked the right query);
- ``top query``: the box IoU of the pair's highest-scoring query, against the object it overlaps most
  (what the score of a detection follows: the classification target is ``p^0.25 * IoU^0.75``);
- on the last layer, the share of objects whose best query is also their pair's top-scoring one.

If the best query's IoU stays low through the layers, the regression is what learns slowly; if it is
high while the top query's is low, the scores rank the queries badly.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torchvision.ops import box_convert, box_iou

from components.errors import Sam3Error
from components.model.batch import collate, image_datapoint
from components.schemas import MediaRecord
from components.storage import ObjectStore

SMALL = 300 / 224 / 224
"""Objects under 300 px in a 224-px image, as a share of the image (the other localisation tables' cut)."""


@dataclass
class LayerBoxes:
    """Per decoder layer (index 0: the start boxes), the IoUs collected over the gold objects."""

    best: list[list[float]] = field(default_factory=list)
    top: list[list[float]] = field(default_factory=list)
    best_small: list[list[float]] = field(default_factory=list)
    best_is_top: list[bool] = field(default_factory=list)

    def means(self) -> list[dict[str, float]]:
        def mean(values: list[float]) -> float:
            return sum(values) / len(values) if values else float("nan")

        return [
            {"best": mean(b), "top": mean(t), "best_small": mean(s)}
            for b, t, s in zip(self.best, self.top, self.best_small, strict=True)
        ]


@torch.no_grad()
def decoder_boxes(model: Any, records: Iterable[MediaRecord], resolution: int) -> LayerBoxes:
    """Follow the boxes through the decoder for every positive query of ``records``.

    The model runs in training mode (the official model returns its layers' outputs only then; the tiny
    and small presets have no dropout, so the outputs are those of evaluation) and is restored after.
    """
    was_training = model.training
    model.train()
    found = LayerBoxes()
    try:
        for record in records:
            queries = [q for q in record.queries if q.positive]
            if record.kind != "image" or not queries:
                continue
            batch = collate(
                [image_datapoint(record, queries, resolution=resolution, targets=True)],
                [q.query_id for q in queries],
                [record.media_id],
            )
            out = model(batch.data).output[-1][-1]
            targets = model.back_convert(batch.data.find_targets[0])
            start = model.transformer.decoder.reference_points.weight.sigmoid()
            layers = [start.expand_as(out["pred_boxes"])]
            layers += [aux["pred_boxes"] for aux in out.get("aux_outputs", [])] + [out["pred_boxes"]]
            if not found.best:
                found.best, found.top, found.best_small = ([[] for _ in layers] for _ in range(3))
            scores = out["pred_logits"][..., 0]
            first = 0
            for q, n in enumerate(targets["num_boxes"].tolist()):
                truth = targets["boxes_xyxy"][first : first + n]
                first += n
                if n == 0:
                    continue
                small = ((truth[:, 2] - truth[:, 0]) * (truth[:, 3] - truth[:, 1]) < SMALL).tolist()
                top = int(scores[q].argmax())
                for i, boxes in enumerate(layers):
                    iou = box_iou(box_convert(boxes[q].float(), "cxcywh", "xyxy"), truth)  # (queries, n)
                    best = iou.max(0).values.tolist()
                    found.best[i].extend(best)
                    found.best_small[i].extend(v for v, s in zip(best, small, strict=True) if s)
                    found.top[i].append(float(iou[top].max()))
                found.best_is_top.extend((iou.argmax(0) == top).tolist())  # the last layer's
    finally:
        model.train(was_training)
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("gold")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from components.evaluate.stage import image_records, load_checkpoint_model

    try:
        store = ObjectStore.from_env()
        model, resolution = load_checkpoint_model(args.checkpoint, store)
        found = decoder_boxes(model, image_records(args.gold, store), resolution)
    except Sam3Error as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if not found.best_is_top:
        print("error: the gold set has no positive pairs with objects", file=sys.stderr)
        raise SystemExit(2)
    print(f"box IoU through the decoder, {len(found.best[0])} gold objects of {len(found.top[0])} pairs")
    print(f"  {'layer':<8} {'best query':>11} {'(small)':>8} {'top query':>10}")
    for i, row in enumerate(found.means()):
        name = "start" if i == 0 else str(i)
        print(f"  {name:<8} {row['best']:>11.3f} {row['best_small']:>8.3f} {row['top']:>10.3f}")
    share = sum(found.best_is_top) / len(found.best_is_top)
    print(f"  best query is the top-scoring one: {share:.2f} of objects")


if __name__ == "__main__":
    main()
