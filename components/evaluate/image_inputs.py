"""SA-Co image ground truth and predictions, loaded into arrays the metrics run on.

Ground truth: COCO-like JSON where each ``images[]`` entry is one (image, noun
phrase) pair (``id, height, width, is_instance_exhaustive``) and ``annotations[]``
carry ``id, image_id, segmentation`` (COCO RLE or polygons), ``bbox`` (xywh),
``iscrowd`` and ``category_id``. Predictions: a list of
``{image_id, score, segmentation (RLE), bbox[, category_id]}``.

Each file loads on its own (possibly in its own process); ``pair_predictions``
then ties predictions to the ground truth's pairs. Within a pair, detections and
ground truths keep the order pycocotools gives them (by category id, then file
order), so that the Hungarian assignment breaks ties as the reference does.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import itemgetter, methodcaller
from pathlib import Path
from typing import Any, NotRequired

import numpy as np
from typing_extensions import TypedDict

from components.errors import DataError
from components.evaluate.records import (
    Box,
    FiniteFloat,
    IouType,
    Segmentation,
    Size,
    adapter,
    describe_in_list,
    describe_in_sections,
    load_validated,
)
from components.evaluate.regions import Regions, build_regions

NO_CATEGORY = -1


class GtImage(TypedDict):
    id: int
    height: Size
    width: Size
    is_instance_exhaustive: bool


class GtAnnotation(TypedDict):
    id: int
    image_id: int
    category_id: NotRequired[int]
    segmentation: NotRequired[Segmentation | None]
    iscrowd: NotRequired[bool]


class GtAnnotationWithBox(GtAnnotation):
    bbox: NotRequired[Box | None]


class GtCategory(TypedDict):
    id: int


class GtFile(TypedDict):
    images: list[GtImage]
    annotations: NotRequired[list[GtAnnotation]]
    categories: NotRequired[list[GtCategory]]


class GtFileWithBoxes(GtFile):
    annotations: NotRequired[list[GtAnnotationWithBox]]  # type: ignore[misc]


class Prediction(TypedDict):
    image_id: int
    score: FiniteFloat
    segmentation: NotRequired[Segmentation | None]
    category_id: NotRequired[int | None]


class PredictionWithBox(Prediction):
    bbox: NotRequired[Box | None]


# Boxes are read (and checked) only for a box evaluation: parsing fewer fields is faster.
_GT_FILE: dict[str, Any] = {"segm": GtFile, "bbox": GtFileWithBoxes}
_PREDICTIONS: dict[str, Any] = {"segm": list[Prediction], "bbox": list[PredictionWithBox]}


@dataclass(frozen=True)
class GroundTruth:
    """One ground-truth file: pairs in file order, annotations grouped by pair.

    pair_ids, sizes (P, 2), exhaustive: per pair. Pair p's annotations are rows
    ``starts[p]:starts[p + 1]`` of ``crowd`` and of ``regions``' rows ``order``.
    """

    path: Path
    pair_ids: np.ndarray
    sizes: np.ndarray
    exhaustive: np.ndarray
    categories: np.ndarray
    starts: np.ndarray
    crowd: np.ndarray
    order: np.ndarray
    regions: Regions


@dataclass(frozen=True)
class Predictions:
    """One prediction file, in file order: image_ids, scores, category_ids (-1: none), regions."""

    path: Path
    image_ids: np.ndarray
    scores: np.ndarray
    category_ids: np.ndarray
    regions: Regions


def load_ground_truth(path: Path, iou_type: IouType) -> GroundTruth:
    """Read and check one SA-Co image ground-truth file."""
    data: GtFile = load_validated(adapter(_GT_FILE[iou_type]), path, describe_in_sections)
    images, annotations = data["images"], data.get("annotations", [])
    pair_ids = np.fromiter(map(itemgetter("id"), images), dtype=np.int64, count=len(images))
    _reject_duplicates(path, "images", pair_ids)
    _reject_duplicates(
        path, "annotations", np.fromiter(map(itemgetter("id"), annotations), np.int64, len(annotations))
    )
    sizes = np.array(list(map(itemgetter("height", "width"), images)), dtype=np.int64).reshape(-1, 2)
    categories = np.unique(np.fromiter((c["id"] for c in data.get("categories", [])), dtype=np.int64))

    image_ids = np.fromiter(map(itemgetter("image_id"), annotations), np.int64, len(annotations))
    ann_pair = pair_index(pair_ids, image_ids)
    for i in np.flatnonzero(ann_pair < 0)[:1]:
        raise DataError(
            f"{path}: annotations[{i}] (id={annotations[i]['id']}): unknown image_id {image_ids[i]}"
        )
    ann_category = np.fromiter(
        map(methodcaller("get", "category_id", NO_CATEGORY), annotations),
        np.int64,
        len(annotations),
    )
    order = np.lexsort((category_rank(path, "annotations[{}]", ann_category, categories), ann_pair))

    def fail(i: int, problem: str) -> DataError:
        a = annotations[i]
        return DataError(f"{path}: annotations[{i}] (id={a['id']}, image_id={a['image_id']}) {problem}")

    return GroundTruth(
        path=Path(path),
        pair_ids=pair_ids,
        sizes=sizes,
        exhaustive=np.fromiter(map(itemgetter("is_instance_exhaustive"), images), bool, len(images)),
        categories=categories,
        starts=np.searchsorted(ann_pair[order], np.arange(len(images) + 1)),
        crowd=np.fromiter(map(methodcaller("get", "iscrowd", False), annotations), bool, len(order))[order],
        order=order,
        regions=build_regions(annotations, iou_type, fail, image_sizes=sizes[ann_pair]),
    )


def load_predictions(path: Path, iou_type: IouType) -> Predictions:
    """Read and check a prediction file on its own (an empty list is valid)."""
    preds: list[Prediction] = load_validated(
        adapter(_PREDICTIONS[iou_type]), path, describe_in_list("prediction", "image_id")
    )

    def fail(i: int, problem: str) -> DataError:
        return DataError(f"{path}: prediction #{i} (image_id={preds[i]['image_id']}) {problem}")

    categories: list[Any] = list(map(methodcaller("get", "category_id"), preds))
    if None in categories:
        categories = [NO_CATEGORY if c is None else c for c in categories]
    return Predictions(
        path=Path(path),
        image_ids=np.fromiter(map(itemgetter("image_id"), preds), np.int64, len(preds)),
        scores=np.fromiter(map(itemgetter("score"), preds), np.float64, len(preds)),
        category_ids=np.array(categories, dtype=np.int64),
        regions=build_regions(preds, iou_type, fail),
    )


def pair_predictions(preds: Predictions, gt: GroundTruth) -> tuple[np.ndarray, np.ndarray]:
    """Tie predictions to ``gt``'s pairs: (pair of each prediction, predictions sorted by pair).

    Checks that every prediction names a known pair and that its mask has the image's size.
    """
    pair = pair_index(gt.pair_ids, preds.image_ids)
    for i in np.flatnonzero(pair < 0)[:1]:
        raise DataError(
            f"{preds.path}: prediction #{i} has image_id {preds.image_ids[i]}, "
            f"which is not a pair in {gt.path}"
        )
    sizes = preds.regions.sizes
    wrong = np.flatnonzero((sizes[:, 0] >= 0) & (sizes != gt.sizes[pair]).any(axis=1))
    for i in wrong[:1]:
        raise DataError(
            f"{preds.path}: prediction #{i} (image_id={preds.image_ids[i]}) mask size "
            f"{sizes[i].tolist()} differs from the image size {gt.sizes[pair[i]].tolist()}"
        )
    rank = category_rank(preds.path, "prediction #{}", preds.category_ids, gt.categories)
    return pair, np.lexsort((rank, pair))


def pair_index(pair_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Position of each of ``ids`` in ``pair_ids`` (unique), -1 where absent."""
    if len(pair_ids) == 0:
        return np.full(len(ids), -1, dtype=np.int64)
    order = np.argsort(pair_ids, kind="stable")
    found = order[np.minimum(np.searchsorted(pair_ids, ids, sorter=order), len(order) - 1)]
    return np.where(pair_ids[found] == ids, found, -1)


def category_rank(path: Path, label: str, category_ids: np.ndarray, categories: np.ndarray) -> np.ndarray:
    """Position of each record's category among the sorted category ids (-1 when it has none).

    pycocotools orders a pair's records by category; an id the ground truth does not
    list is an error (the reference would silently drop the record). label names
    record i in the message, e.g. "prediction #{}".
    """
    if len(categories) == 0:
        return np.full(len(category_ids), -1, dtype=np.int64)
    rank = np.searchsorted(categories, category_ids)
    known = (category_ids == NO_CATEGORY) | (
        categories[np.minimum(rank, len(categories) - 1)] == category_ids
    )
    for i in np.flatnonzero(~known)[:1]:
        raise DataError(
            f"{path}: {label.format(i)} has category_id {category_ids[i]}, "
            "not among the ground truth's categories"
        )
    return np.where(category_ids == NO_CATEGORY, -1, rank)


def _reject_duplicates(path: Path, section: str, ids: np.ndarray) -> None:
    unique, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise DataError(f"{path}: {section} id {unique[np.argmax(counts > 1)]} appears more than once")
