"""The SYN and EXT training sources: the synthetic data differing from HQ the way SA-Co's sources do.

The clean training split (``train/``) plays SA-Co/HQ: exhaustive, exact masks, phrases at every
specificity, hard negatives. Beside it:

- **SYN** (``syn_train/``, SA-Co image format): the same domain labelled by a weaker annotator, as SA-Co/SYN
  is labelled by models without a person checking. The scenes and queries are drawn as for ``train``, then
  the labels are spoilt: each instance of a positive phrase is missed with ``MISS``, masks are loose
  (dilated by ``LOOSE_PX`` pixels at 224 px, boxes taken from the loose masks), and a positive phrase is
  replaced by a phrase one attribute value away with ``WRONG_PHRASE`` (its instances then answer a phrase
  that does not describe them). The pairs still claim to be exhaustive, as the annotator does.
- **EXT** (``ext_train/``, plain COCO JSON converted by the ingest's COCO reader): a different domain (a
  saturated backdrop with clutter strokes instead of the desaturated grey) with its own flat label set of
  COCO-style categories, one per colour and shape ("red circle"; ``EXT_CATEGORIES``): no sizes, no
  textures, no one- or three-word phrases. The COCO reader makes every category of an image a pair, absent
  ones negatives, none marked hard (a converted dataset knows no ontology).

Each draws from its own random stream, so adding them changes nothing in ``train``, ``gold`` or the videos.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from components import masks
from components.progress import Progress
from components.synthetic.images import file_name, pair_record
from components.synthetic.ontology import COLOURS, SHAPES, noun_phrase, one_value_away
from components.synthetic.output import item_rng, save_jpeg, write_json
from components.synthetic.queries import Query, instances_of, train_queries
from components.synthetic.scene import REFERENCE_SIZE, sample_scene
from components.synthetic.summary import SplitSummary

log = logging.getLogger(__name__)

SYN_SPLIT = "syn_train"
EXT_SPLIT = "ext_train"
MISS = 0.25
"""The weak annotator misses this share of a positive phrase's instances."""
LOOSE_PX = 3.0
"""Its masks reach this many pixels (at 224 px) beyond the object."""
WRONG_PHRASE = 0.1
"""It names this share of the positive phrases one attribute value off."""
EXT_CATEGORIES: tuple[str, ...] = tuple(f"{c} {s}" for s in SHAPES for c in COLOURS)
"""EXT's label set: one COCO-style category per colour and shape (ids from 1, in this order)."""


def weak_labels(rng: np.random.Generator, queries: list[Query], objects: list[dict[str, str]]) -> list[Query]:
    """The weak annotator's version of a scene's queries: instances missed, some phrases wrong."""
    used = {q.noun_phrase for q in queries}
    out = []
    for q in queries:
        if not q.positive:
            out.append(q)
            continue
        kept = tuple(i for i in q.instances if rng.random() >= MISS)
        phrase, attributes = q.noun_phrase, q.attributes
        if rng.random() < WRONG_PHRASE:
            wrong = [c for c in one_value_away(q.attributes) if noun_phrase(c) not in used]
            wrong = [c for c in wrong if not instances_of(c, objects)] or wrong
            if wrong:
                attributes = wrong[int(rng.integers(len(wrong)))]
                phrase = noun_phrase(attributes)
                used.add(phrase)
        out.append(Query(phrase, dict(attributes), kept))
    return out


def loose(mask: np.ndarray, size: int) -> np.ndarray:
    """The mask dilated by about LOOSE_PX pixels (scaled with the image)."""
    r = max(1, round(LOOSE_PX * size / REFERENCE_SIZE))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    return np.asarray(cv2.dilate(mask.astype(np.uint8), kernel), bool)


def write_syn_split(
    out: Path, *, count: int, size: int, seed: int, category_ids: dict[str, int], progress: Progress | None
) -> SplitSummary:
    """``count`` images of the HQ domain with the weak annotator's labels, SA-Co image format."""
    root = out / SYN_SPLIT
    pairs: list[dict[str, object]] = []
    annotations: list[dict[str, object]] = []
    negatives = hard = 0
    for index in range(count):
        rng = item_rng(seed, SYN_SPLIT, index)
        scene = sample_scene(rng, size)
        objects = [dict(o.attributes) for o in scene.objects]
        queries = weak_labels(rng, train_queries(rng, objects), objects)
        save_jpeg(root / "images" / file_name(index), scene.image)
        labelled = [loose(o.visible, size) for o in scene.objects]
        for query in queries:
            pair_id = len(pairs) + 1
            negatives += not query.positive
            hard += query.hard_negative
            pairs.append(
                pair_record(pair_id, index, query.noun_phrase, size, category_ids[query.noun_phrase])
            )
            for i in query.instances:
                ann = _annotation(len(annotations) + 1, pair_id, labelled[i], normalised=True)
                annotations.append({**ann, "category_id": category_ids[query.noun_phrase]})
        if progress is not None:
            progress(SYN_SPLIT, index + 1, count)
    root.mkdir(parents=True, exist_ok=True)
    write_json(root / "annotations.json", {"images": pairs, "annotations": annotations, "categories": []})
    return _summary(SYN_SPLIT, count, len(pairs), len(pairs) - negatives, hard, len(annotations))


def ext_scene_backdrop(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """EXT's domain: a saturated two-colour gradient crossed by dark clutter strokes (float (H, W, 3))."""
    a, b = rng.uniform(40.0, 230.0, 3), rng.uniform(40.0, 230.0, 3)
    t = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :, None]
    canvas = np.ascontiguousarray(np.broadcast_to((1 - t) * a + t * b, (height, width, 3)).astype(np.float32))
    for _ in range(int(rng.integers(3, 8))):
        p0 = tuple(int(v) for v in rng.integers(0, min(height, width), 2))
        p1 = tuple(int(v) for v in rng.integers(0, min(height, width), 2))
        cv2.line(
            canvas, p0, p1, tuple(float(v) for v in rng.uniform(20.0, 70.0, 3)), 1 + int(rng.integers(2))
        )
    return canvas


def write_ext_split(
    out: Path, *, count: int, size: int, seed: int, progress: Progress | None
) -> SplitSummary:
    """``count`` images of the EXT domain with COCO-style category labels (plain COCO JSON, pixel boxes)."""
    root = out / EXT_SPLIT
    ids = {name: i + 1 for i, name in enumerate(EXT_CATEGORIES)}
    images: list[dict[str, object]] = []
    annotations: list[dict[str, object]] = []
    present_pairs = 0
    for index in range(count):
        rng = item_rng(seed, EXT_SPLIT, index)
        scene = sample_scene(rng, size, backdrop=ext_scene_backdrop)
        save_jpeg(root / "images" / file_name(index), scene.image)
        images.append({"id": index + 1, "file_name": file_name(index), "width": size, "height": size})
        present = set()
        for obj in scene.objects:
            category = f"{obj.attributes['colour']} {obj.attributes['shape']}"
            present.add(category)
            ann = _annotation(len(annotations) + 1, index + 1, obj.visible, normalised=False)
            annotations.append({**ann, "category_id": ids[category]})
        present_pairs += len(present)
        if progress is not None:
            progress(EXT_SPLIT, index + 1, count)
    categories = [{"id": i, "name": name} for name, i in ids.items()]
    root.mkdir(parents=True, exist_ok=True)
    write_json(
        root / "annotations.json", {"images": images, "annotations": annotations, "categories": categories}
    )
    pairs = count * len(EXT_CATEGORIES)
    return _summary(EXT_SPLIT, count, pairs, present_pairs, 0, len(annotations))


def _annotation(ann_id: int, image_id: int, mask: np.ndarray, *, normalised: bool) -> dict[str, object]:
    """One instance: its RLE, its box (normalised for SA-Co, pixels for COCO) and its area."""
    rle = masks.encode(mask)
    box = masks.box_xywh(rle)
    height, width = mask.shape
    return {
        "id": ann_id,
        "image_id": image_id,
        "bbox": masks.normalised(box, width, height) if normalised else box,
        "segmentation": rle,
        "area": int(np.count_nonzero(mask)),
        "iscrowd": 0,
    }


def _summary(split: str, media: int, pairs: int, positives: int, hard: int, instances: int) -> SplitSummary:
    log.info(
        "%s: %d images, %d pairs (%d negative), %d instances",
        split,
        media,
        pairs,
        pairs - positives,
        instances,
    )
    return SplitSummary(
        kind="image",
        annotations=f"{split}/annotations.json",
        images=f"{split}/images",
        media=media,
        pairs=pairs,
        positive_pairs=positives,
        negative_pairs=pairs - positives,
        hard_negative_pairs=hard,
        instances=instances,
    )
