"""Image splits in the SA-Co image format: ``<split>/annotations.json`` + ``<split>/images/*.jpg``.

``images[]`` holds one entry per (image, noun phrase) pair, so many entries
share a file; ``annotations[]`` hold the visible-part instance masks (COCO RLE)
with boxes normalised to [0, 1]; a pair without annotations is a negative.
Pair and annotation ids count from 1 in file order.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from components import masks
from components.progress import Progress
from components.synthetic.output import item_rng, save_jpeg, write_json
from components.synthetic.queries import Query, gold_queries, train_queries
from components.synthetic.scene import Scene, sample_scene
from components.synthetic.summary import SplitSummary

log = logging.getLogger(__name__)


def file_name(index: int) -> str:
    """The JPEG of image ``index`` (from 0), relative to the split's ``images/``."""
    return f"{index:06d}.jpg"


def pair_record(pair_id: int, index: int, phrase: str, size: int, category: int) -> dict[str, object]:
    """One image-phrase pair of an SA-Co image file (its ``images`` entry) for the ``index``-th image."""
    return {
        "id": pair_id,
        "file_name": file_name(index),
        "text_input": phrase,
        "width": size,
        "height": size,
        "is_instance_exhaustive": True,
        "queried_category": category,
    }


def image_item(seed: int, split: str, index: int, size: int) -> tuple[Scene, list[Query]]:
    """Image ``index`` of ``split`` (``train`` or ``gold``): its scene and its queries."""
    rng = item_rng(seed, split, index)
    scene = sample_scene(rng, size)
    objects = [o.attributes for o in scene.objects]
    queries = gold_queries(rng, objects) if split == "gold" else train_queries(rng, objects)
    return scene, queries


def write_image_split(
    out: Path,
    split: str,
    *,
    count: int,
    size: int,
    seed: int,
    category_ids: dict[str, int],
    progress: Progress | None = None,
) -> SplitSummary:
    """Render ``count`` images into ``out/split`` and write their annotations."""
    root = out / split
    pairs: list[dict[str, object]] = []
    annotations: list[dict[str, object]] = []
    used: set[str] = set()
    hard = 0
    for index in range(count):
        scene, queries = image_item(seed, split, index, size)
        save_jpeg(root / "images" / file_name(index), scene.image)
        rles = [masks.encode(o.visible) for o in scene.objects]
        boxes = [masks.normalised(masks.box_xywh(r), size, size) for r in rles]
        areas = [int(np.count_nonzero(o.visible)) for o in scene.objects]
        for query in queries:
            pair_id = len(pairs) + 1
            category = category_ids[query.noun_phrase]
            used.add(query.noun_phrase)
            hard += query.hard_negative
            pairs.append(pair_record(pair_id, index, query.noun_phrase, size, category))
            for i in query.instances:
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": pair_id,
                        "category_id": category,
                        "bbox": boxes[i],
                        "segmentation": rles[i],
                        "area": areas[i],
                        "iscrowd": 0,
                    }
                )
        if progress is not None:
            progress(split, index + 1, count)
    categories = [{"id": category_ids[n], "name": n} for n in sorted(used, key=category_ids.__getitem__)]
    root.mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(exist_ok=True)
    write_json(
        root / "annotations.json", {"images": pairs, "annotations": annotations, "categories": categories}
    )
    positives = len({a["image_id"] for a in annotations})
    summary = SplitSummary(
        kind="image",
        annotations=f"{split}/annotations.json",
        images=f"{split}/images",
        media=count,
        pairs=len(pairs),
        positive_pairs=positives,
        negative_pairs=len(pairs) - positives,
        hard_negative_pairs=hard,
        instances=len(annotations),
    )
    log.info(
        "%s: %d images, %d pairs (%d negative, %d hard), %d instances",
        split,
        count,
        summary.pairs,
        summary.negative_pairs,
        hard,
        summary.instances,
    )
    return summary
