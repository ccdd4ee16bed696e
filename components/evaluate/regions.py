"""The regions records are compared by: checked compressed RLE masks, or xywh boxes.

``Regions`` holds them column-wise (one bytes blob of RLE counts plus offsets and
sizes, or an (N, 4) box array), so that a loader process hands them back cheaply
and pycocotools gets RLE dicts built on demand.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from operator import itemgetter, methodcaller
from typing import Any

import numpy as np
import pycocotools.mask as mask_utils

from components.errors import DataError
from components.evaluate.records import IouType
from components.masks import compressed_rles_ok, polygon_ok, to_compressed, uncompressed_rle_ok

Fail = Callable[[int, str], DataError]
"""(record index, problem) -> the error to raise."""


@dataclass(frozen=True)
class Regions:
    """N regions. Masks: record i's RLE counts are ``counts[offsets[i]:offsets[i + 1]]``, its
    size ``sizes[i]`` (height, width); boxes: ``boxes[i]`` (x, y, w, h), ``sizes[i]`` the size
    of the mask it was taken from, -1 when the record gave the box."""

    iou_type: IouType
    sizes: np.ndarray
    counts: bytes = b""
    offsets: np.ndarray | None = None
    boxes: np.ndarray | None = None

    def for_iou(self, index: Sequence[int], widths: Sequence[int] | None = None) -> Any:
        """pycocotools iou input: RLE dicts (with ``widths`` in place of the true ones) or an (n, 4) array."""
        if self.boxes is not None:
            return self.boxes[np.asarray(index, dtype=np.int64)]
        offsets, heights, true_widths = self._python_columns
        counts = self.counts
        if widths is None:
            widths = [true_widths[i] for i in index]
        return [
            {"size": [heights[i], w], "counts": counts[offsets[i] : offsets[i + 1]]}
            for i, w in zip(index, widths, strict=True)
        ]

    @cached_property
    def _python_columns(self) -> tuple[list[int], list[int], list[int]]:
        """offsets, heights, widths as Python ints (building RLE dicts from them is faster)."""
        assert self.offsets is not None
        return self.offsets.tolist(), self.sizes[:, 0].tolist(), self.sizes[:, 1].tolist()


def build_regions(
    records: Sequence[Mapping[str, Any]],
    iou_type: IouType,
    fail: Fail,
    image_sizes: np.ndarray | None = None,
) -> Regions:
    """Check each record's ``segmentation`` (and ``bbox``) and gather them as Regions.

    image_sizes: (N, 2) the image size of each record's pair, when known here: masks
    must match it and polygons need it. Without it (predictions are loaded apart from
    the ground truth), the caller compares ``Regions.sizes`` with the images later.
    A box evaluation takes ``bbox`` and falls back to the mask's box, as pycocotools' loadRes.
    """
    if iou_type == "bbox":
        return _box_regions(records, fail, image_sizes)
    segmentations = list(map(methodcaller("get", "segmentation"), records))
    columns = _compressed_columns(segmentations)
    if columns is None:  # polygons, uncompressed or missing masks: one by one
        masks = mask_list(segmentations, fail, image_sizes)
        counts = [m["counts"] for m in masks]
        lengths = np.fromiter(map(len, counts), dtype=np.int64, count=len(counts))
        sizes = np.array([m["size"] for m in masks], dtype=np.int64).reshape(-1, 2)
        return Regions("segm", sizes, b"".join(counts), np.concatenate(([0], np.cumsum(lengths))))
    blob, offsets, sizes = columns
    if image_sizes is not None:
        for i in np.flatnonzero((sizes != image_sizes).any(axis=1))[:1]:
            raise fail(
                int(i), f"mask size {sizes[i].tolist()} differs from the image size {image_sizes[i].tolist()}"
            )
    ok = compressed_rles_ok(blob, offsets, sizes[:, 0] * sizes[:, 1])
    for i in np.flatnonzero(~ok)[:1]:
        raise fail(int(i), "malformed RLE: counts do not decode to height x width pixels")
    return Regions("segm", sizes, blob, offsets)


def _compressed_columns(segmentations: list[Any]) -> tuple[bytes, np.ndarray, np.ndarray] | None:
    """(counts blob, offsets, sizes) when every segmentation is a compressed RLE with ASCII counts."""
    try:
        counts = list(map(itemgetter("counts"), segmentations))
        sizes = np.array(list(map(itemgetter("size"), segmentations)), dtype=np.int64).reshape(-1, 2)
    except (TypeError, KeyError, ValueError):
        return None
    if set(map(type, counts)) - {str}:
        return None
    joined = "".join(counts)
    blob = joined.encode("utf-8")
    if len(blob) != len(joined):  # non-ASCII characters: let the one-by-one path name the record
        return None
    lengths = np.fromiter(map(len, counts), dtype=np.int64, count=len(counts))
    return blob, np.concatenate(([0], np.cumsum(lengths))), sizes


def _box_regions(records: Sequence[Mapping[str, Any]], fail: Fail, image_sizes: np.ndarray | None) -> Regions:
    boxes_given = list(map(methodcaller("get", "bbox"), records))
    need_mask = [i for i, box in enumerate(boxes_given) if box is None]
    boxes = np.zeros((len(records), 4), dtype=np.float64)
    if len(need_mask) < len(records):
        given = np.setdiff1d(np.arange(len(records)), need_mask)
        boxes[given] = [boxes_given[i] for i in given.tolist()]
    # a given box has no mask size to check: -1
    sizes = np.full((len(records), 2), -1, dtype=np.int64) if image_sizes is None else np.array(image_sizes)
    if need_mask:
        sub_sizes = image_sizes[need_mask] if image_sizes is not None else None
        masks = mask_list(
            [records[i].get("segmentation") for i in need_mask],
            lambda k, problem: fail(need_mask[k], problem),
            sub_sizes,
        )
        boxes[need_mask] = mask_utils.toBbox(masks)
        sizes[need_mask] = [m["size"] for m in masks]
    return Regions("bbox", sizes.reshape(-1, 2), boxes=boxes)


def mask_list(
    segmentations: Sequence[Any], fail: Fail, image_sizes: np.ndarray | None = None
) -> list[dict[str, Any]]:
    """Checked compressed RLEs (``counts`` as bytes) from COCO segmentations (RLE or polygons), one by one."""
    masks: list[dict[str, Any]] = []
    compressed: list[int] = []
    for i, segm in enumerate(segmentations):
        if segm is None:
            raise fail(i, "has no segmentation (use --iou-type bbox to compare boxes)")
        if isinstance(segm, list):
            if image_sizes is None:
                raise fail(i, "is a polygon: predictions must be COCO RLE")
            if not polygon_ok(segm):
                raise fail(i, "malformed polygon: each ring needs an even number (>= 6) of coordinates")
            masks.append(to_compressed(segm, int(image_sizes[i, 0]), int(image_sizes[i, 1])))
            continue
        height, width = (int(v) for v in segm["size"])
        if image_sizes is not None and (height, width) != (image_sizes[i, 0], image_sizes[i, 1]):
            raise fail(
                i, f"mask size [{height}, {width}] differs from the image size {image_sizes[i].tolist()}"
            )
        if isinstance(segm["counts"], str):
            masks.append({"size": [height, width], "counts": segm["counts"].encode("utf-8")})
            compressed.append(i)
        elif uncompressed_rle_ok(segm["counts"], height * width):
            masks.append(to_compressed(segm, height, width))
        else:
            raise fail(i, "malformed RLE: run lengths do not cover height x width")
    if compressed:
        counts = [masks[i]["counts"] for i in compressed]
        lengths = np.fromiter(map(len, counts), dtype=np.int64, count=len(counts))
        areas = np.array([masks[i]["size"][0] * masks[i]["size"][1] for i in compressed], dtype=np.int64)
        ok = compressed_rles_ok(b"".join(counts), np.concatenate(([0], np.cumsum(lengths))), areas)
        for k in np.flatnonzero(~ok)[:1]:
            raise fail(compressed[k], "malformed RLE: counts do not decode to height x width pixels")
    return masks
