"""Hand-made predictors for the synthetic gold split: the true objects, with words of the phrase ignored.

The gap between them (e.g. oracle vs colour-blind) shows how much each attribute
matters to cgF1 on this data; a trained model should land between "shape only" and
the oracle.
"""

from __future__ import annotations

from components import masks
from components.synthetic.images import image_item
from components.synthetic.queries import instances_of

PREDICTORS: dict[str, tuple[str, ...] | None] = {
    "oracle": (),
    "colour-blind": ("colour",),
    "texture-blind": ("texture",),
    "size-blind": ("size",),
    "shape only": ("colour", "texture", "size"),
    "no recognition": None,  # every object for every phrase
}


def predictions(images: int, size: int, seed: int, ignore: tuple[str, ...] | None) -> list[dict[str, object]]:
    """Predictions in gold-file order (pair ids count from 1 over images, then their queries)."""
    return all_predictions(images, size, seed, {"only": ignore})["only"]


def all_predictions(
    images: int, size: int, seed: int, predictors: dict[str, tuple[str, ...] | None] | None = None
) -> dict[str, list[dict[str, object]]]:
    """Each predictor's predictions (default: every one in ``PREDICTORS``), rendering the gold split once."""
    predictors = PREDICTORS if predictors is None else predictors
    out: dict[str, list[dict[str, object]]] = {name: [] for name in predictors}
    pair_id = 0
    for index in range(images):
        scene, queries = image_item(seed, "gold", index, size)
        objects = [o.attributes for o in scene.objects]
        found: dict[int, dict[str, object]] = {}  # object -> its mask and box, encoded once
        for query in queries:
            pair_id += 1
            for name, ignore in predictors.items():
                if ignore is None:
                    hits = tuple(range(len(objects)))
                else:
                    relaxed = {k: v for k, v in query.attributes.items() if k not in ignore}
                    hits = instances_of(relaxed, objects)
                for i in hits:
                    if i not in found:
                        rle = masks.encode(scene.objects[i].visible)
                        box = masks.normalised(masks.box_xywh(rle), size, size)
                        found[i] = {"bbox": box, "segmentation": rle}
                    out[name].append({"image_id": pair_id, "score": 1.0, **found[i]})
    return out
