"""Dataset records -> the official SAM 3 batch (``BatchedDatapoint``), through the official collator.

Each (image, noun phrase) query becomes one text-prompted find query on its
image. An image is decoded, resized to ``resolution`` x ``resolution`` (square,
as the official transforms do) and normalised with mean 0.5 / std 0.5. Targets
follow the official loader: boxes are normalised (cx, cy, w, h), masks are
boolean at the model resolution, crowd and zero-area instances are dropped, a
negative query has no targets, and each query carries its ``exhaustive`` flag
(the loss ignores unmatched predictions of a non-exhaustive query). With
probability ``exemplar_prob`` a positive query also gets one of its
ground-truth boxes as a positive box exemplar prompt; for evaluation with
exemplars (``exemplars`` k), every positive query gets its first k.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Self

import cv2
import numpy as np
import torch
from PIL import Image as PILImage
from pycocotools import mask as mask_utils

from components.errors import DataError
from components.model.compat import ensure_compat
from components.schemas import Instance, MediaRecord, Query

log = logging.getLogger(__name__)

IMAGE_MEAN = 0.5
IMAGE_STD = 0.5
DICT_KEY = "all"


class TensorBatch:
    """A dataclass batch whose tensors move together, wherever they sit in its fields: ``to`` a device,
    and ``pin_memory`` (called by ``DataLoader(pin_memory=True)``); everything else stays as it is."""

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Self:
        moved: Self = map_tensors(self, lambda t: t.to(device, non_blocking=non_blocking))
        return moved

    def pin_memory(self) -> Self:
        pinned: Self = map_tensors(self, lambda t: t.pin_memory())
        return pinned


@dataclass
class ModelBatch(TensorBatch):
    """One batch: ``data`` is the model's forward input; ``data.find_targets`` hold the loss targets.

    ``data.img_batch``: (I, 3, R, R) float images; ``data.find_inputs[0]``: one find
    query per (image, noun phrase) pair, Q in all, in the order of ``query_ids``
    (and of the model's outputs). ``media_ids`` name the I images.
    """

    data: Any  # sam3.model.data_misc.BatchedDatapoint
    query_ids: list[str]
    media_ids: list[str]

    @property
    def num_images(self) -> int:
        return len(self.media_ids)

    @property
    def num_queries(self) -> int:
        return len(self.query_ids)


def map_tensors(obj: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        changes = {f.name: map_tensors(getattr(obj, f.name), fn) for f in dataclasses.fields(obj) if f.init}
        return dataclasses.replace(obj, **changes)
    if isinstance(obj, list | tuple):
        return type(obj)(map_tensors(x, fn) for x in obj)
    if isinstance(obj, dict):
        return {k: map_tensors(v, fn) for k, v in obj.items()}
    return obj


def records_to_batch(
    records: list[MediaRecord],
    *,
    resolution: int,
    max_queries_per_image: int,
    exemplar_prob: float,
    rng: random.Random,
    positive_fraction: float | None = None,
) -> ModelBatch:
    """The training batch of these records' images (videos are skipped).

    An image with more than ``max_queries_per_image`` queries keeps a random subset
    (drawn from ``rng``, in record order); with ``positive_fraction`` that share of the
    subset is drawn from the positive queries first (an image with 30 mined hard
    negatives would otherwise give mostly negatives). DataError if no image query is left.
    """
    datapoints: list[Any] = []
    query_ids: list[str] = []
    media_ids: list[str] = []
    for record in records:
        if record.kind != "image":
            log.debug(
                "skipping %s: %s records are not trained by the image model", record.media_id, record.kind
            )
            continue
        queries = _sample_queries(record.queries, max_queries_per_image, positive_fraction, rng)
        if not queries:
            continue
        datapoints.append(
            image_datapoint(record, queries, resolution=resolution, exemplar_prob=exemplar_prob, rng=rng)
        )
        query_ids.extend(q.query_id for q in queries)
        media_ids.append(record.media_id)
    return collate(datapoints, query_ids, media_ids)


def _sample_queries(
    queries: list[Query], limit: int, positive_fraction: float | None, rng: random.Random
) -> list[Query]:
    if len(queries) <= limit:
        return queries
    if positive_fraction is None:
        keep = rng.sample(range(len(queries)), limit)
    else:
        pos = [i for i, q in enumerate(queries) if q.positive]
        neg = [i for i, q in enumerate(queries) if not q.positive]
        n_pos = min(len(pos), round(limit * positive_fraction))
        n_neg = min(len(neg), limit - n_pos)
        n_pos = min(len(pos), limit - n_neg)  # top up with positives when negatives run short
        keep = rng.sample(pos, n_pos) + rng.sample(neg, n_neg)
    return [queries[i] for i in sorted(keep)]


def collate(datapoints: Sequence[Any], query_ids: list[str], media_ids: list[str]) -> ModelBatch:
    """Official collation (``collate_fn_api``, with masks) of one-image datapoints."""
    if not datapoints:
        raise DataError("no image query in this batch (every record is a video or has no query)")
    ensure_compat()
    from sam3.train.data.collator import collate_fn_api

    data = collate_fn_api(list(datapoints), dict_key=DICT_KEY, with_seg_masks=True)[DICT_KEY]
    return ModelBatch(data=data, query_ids=query_ids, media_ids=media_ids)


def image_datapoint(
    record: MediaRecord,
    queries: Sequence[Query],
    *,
    resolution: int,
    targets: bool = True,
    exemplar_prob: float = 0.0,
    rng: random.Random | None = None,
    exemplars: int = 0,
) -> Any:
    """One official ``Datapoint``: the record's image and one find query per given query.

    ``targets=False`` skips decoding ground truth (for prediction). ``exemplars`` k > 0: each
    positive query carries the boxes of its first k instances (record order) as positive box
    exemplars with its phrase, as SAM 3's evaluation with exemplar prompts does (a negative pair
    has no instance to give, so it stays text only).
    """
    ensure_compat()
    from sam3.train.data.sam3_image_dataset import (
        Datapoint,
        FindQueryLoaded,
        Image,
        InferenceMetadata,
    )

    image = Image(data=decode_image(record, resolution), objects=[], size=(resolution, resolution))
    find_queries = []
    for query in queries:
        first = len(image.objects)
        if targets and query.positive:
            image.objects.extend(_objects(record, query.instances, resolution))
        object_ids = list(range(first, len(image.objects)))
        exemplar = None
        if object_ids and exemplar_prob > 0 and rng is not None and rng.random() < exemplar_prob:
            exemplar = image.objects[rng.choice(object_ids)].bbox.view(1, 4).clone()
        if exemplars > 0 and query.positive:
            given = _objects(record, query.instances, resolution)[:exemplars]
            exemplar = torch.stack([o.bbox for o in given]) if given else None
        find_queries.append(
            FindQueryLoaded(
                query_text=query.noun_phrase,
                image_id=0,
                object_ids_output=object_ids,
                is_exhaustive=query.exhaustive,
                is_pixel_exhaustive=True if query.exhaustive else None,
                query_processing_order=0,
                input_bbox=exemplar,
                input_bbox_label=None if exemplar is None else torch.ones(len(exemplar), dtype=torch.long),
                inference_metadata=InferenceMetadata(
                    coco_image_id=_int_or(query.origin_id, -1),
                    original_image_id=-1,
                    original_category_id=-1,
                    original_size=(record.height, record.width),
                    object_id=-1,
                    frame_index=0,
                ),
            )
        )
    return Datapoint(find_queries=find_queries, images=[image])


def decode_image(record: MediaRecord, resolution: int) -> torch.Tensor:
    """The record's first frame as a normalised (3, R, R) float tensor."""
    try:
        return decode_frame(record.frames[0], resolution)
    except (OSError, IndexError) as exc:
        raise DataError(f"{record.media_id}: cannot decode its image: {exc}") from exc


def decode_frame(data: bytes, resolution: int) -> torch.Tensor:
    """Encoded image bytes as a normalised (3, R, R) float tensor (square resize, mean 0.5 / std 0.5).

    OSError when the bytes are not an image.
    """
    with PILImage.open(io.BytesIO(data)) as im:
        rgb = im.convert("RGB").resize((resolution, resolution), PILImage.Resampling.BILINEAR)
    pixels = torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255.0).permute(2, 0, 1)
    return (pixels - IMAGE_MEAN) / IMAGE_STD


def _objects(record: MediaRecord, instances: Sequence[Instance], resolution: int) -> list[Any]:
    """Target objects of a query: visible, non-crowd instances with a non-empty box (the official filters)."""
    from sam3.train.data.sam3_image_dataset import Object

    objects = []
    for instance in instances:
        if instance.crowd:
            continue
        counts = instance.masks[0] if instance.masks else None
        rle = None if counts is None else {"size": [record.height, record.width], "counts": counts.encode()}
        xywh = instance.boxes[0] if instance.boxes else None
        if xywh is None and rle is not None:
            x, y, w, h = mask_utils.toBbox(rle)
            xywh = [x / record.width, y / record.height, w / record.width, h / record.height]
        if xywh is None:
            continue  # not visible in this frame
        x0, y0 = min(max(xywh[0], 0.0), 1.0), min(max(xywh[1], 0.0), 1.0)
        x1, y1 = min(max(xywh[0] + xywh[2], 0.0), 1.0), min(max(xywh[1] + xywh[3], 0.0), 1.0)
        if x1 <= x0 or y1 <= y0:
            continue
        box = torch.tensor([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], dtype=torch.float32)
        mask = None if rle is None else torch.from_numpy(resize_mask(mask_utils.decode(rle), resolution))
        objects.append(
            Object(
                bbox=box,
                area=float((x1 - x0) * (y1 - y0)) * resolution * resolution,
                object_id=instance.object_id,
                frame_index=0,
                segment=mask,
                is_crowd=False,
            )
        )
    return objects


def resize_mask(mask: np.ndarray, resolution: int) -> np.ndarray:
    """(H, W) mask -> (R, R) bool: area-averaged when shrinking, bilinear when growing, then >= 0.5."""
    shrink = resolution < max(mask.shape)
    resized = cv2.resize(
        mask.astype(np.float32),
        (resolution, resolution),
        interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR,
    )
    return np.asarray(resized >= 0.5)


def _int_or(text: str, default: int) -> int:
    try:
        return int(text)
    except ValueError:
        return default
