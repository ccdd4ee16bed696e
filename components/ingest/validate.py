"""Turn a planned media item into a checked :class:`MediaRecord`.

A bad image rejects its media item; a bad annotation rejects its query
(a query missing an instance would teach a false negative). Masks are kept
as COCO compressed RLE; polygons and uncompressed RLE are converted.
"""

from __future__ import annotations

import io
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from PIL import Image

from components import masks
from components.errors import DataError
from components.ingest.readers import MediaPlan, RawQuery
from components.ingest.sources import SourceFiles
from components.schemas import Instance, MediaRecord, Query, Reject

_BOX_EPS = 1e-3


ImageCheck = Literal["structure", "decode"]
_PIL_LIMIT_LOCK = threading.Lock()


@dataclass(frozen=True)
class Limits:
    max_pixels: int = 64_000_000  # images whose header claims more are rejected (decompression bombs)
    image_check: ImageCheck = "structure"


class Defect(Exception):
    """One defect found while checking a record: a reject code and its reason."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def _open_header(data: bytes) -> Image.Image:
    """Parse the header only, with PIL's own bomb limit lifted: ours applies, with our reason."""
    with _PIL_LIMIT_LOCK:  # the limit is a PIL global; checks run on several threads
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            return Image.open(io.BytesIO(data))
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _jpeg_complete(data: bytes) -> bool:
    """True when an end-of-image marker follows the last start-of-scan (0xFF is byte-stuffed inside scans)."""
    last_scan = data.rfind(b"\xff\xda")
    return last_scan >= 0 and data.rfind(b"\xff\xd9") > last_scan


def check_image(data: bytes, width: int, height: int, limits: Limits) -> None:
    """Header size and pixel limit first, then the image's integrity.

    ``structure``: a JPEG must end its last scan with an end-of-image marker, a PNG must pass PIL's
    ``verify()`` (every chunk's CRC, through IEND); other formats are decoded. This catches what corrupts
    files in practice (truncated transfers, junk, a wrong format) without decoding every pixel.
    ``decode``: every image is decoded in full.
    """
    try:
        img = _open_header(data)
        w, h = img.size
        if w * h > limits.max_pixels:
            raise Defect(
                "image_too_large", f"header claims {w}x{h} = {w * h} pixels (limit {limits.max_pixels})"
            )
        if (w, h) != (width, height):
            raise Defect("image_size_mismatch", f"image is {w}x{h} but the annotations say {width}x{height}")
        if limits.image_check == "structure" and img.format == "JPEG":
            if not _jpeg_complete(data):
                raise Defect("image_corrupt", "JPEG is truncated: no end-of-image marker after its last scan")
        elif limits.image_check == "structure" and img.format == "PNG":
            img.verify()
        else:
            if img.format == "JPEG":
                img.draft("RGB", (max(1, w // 8), max(1, h // 8)))  # DCT-scaled decode still reads every byte
            img.load()
    except Defect:
        raise
    except Exception as exc:  # PIL raises many types for corrupt data
        raise Defect("image_corrupt", f"cannot decode image: {type(exc).__name__}: {exc}") from None


Checked = Mapping[str, int]
"""Compressed RLE strings -> the pixels they cover (-1: malformed), checked ahead (``checked_strings``)."""


def checked_strings(plan: MediaPlan) -> Checked:
    """Every compressed RLE string of a media item's annotations, checked in one pass (components.masks: a
    batch costs about what one string does)."""
    found: set[str] = set()
    for raw in plan.queries:
        for _, ann in raw.annotations:
            segs = ann.get("segmentations") if plan.kind == "video" else [ann.get("segmentation")]
            for seg in segs if isinstance(segs, list) else []:
                if isinstance(seg, dict) and isinstance(seg.get("counts"), str):
                    found.add(seg["counts"])
    strings = list(found)
    encoded = [c.encode() for c in strings]
    offsets = np.concatenate(([0], np.cumsum([len(c) for c in encoded], dtype=np.int64)))
    return dict(zip(strings, masks.compressed_rle_pixels(b"".join(encoded), offsets).tolist(), strict=True))


def to_rle_counts(seg: Any, height: int, width: int, checked: Checked | None = None) -> str:
    """COCO compressed RLE counts for a segmentation (RLE or polygons) of an image of (height, width).

    The mask is checked (components.masks) before pycocotools converts or measures it; ``checked``: the
    compressed strings' pixels, when they were checked ahead."""
    area = height * width
    if isinstance(seg, dict):
        size = seg.get("size")
        counts = seg.get("counts")
        if not (isinstance(size, list) and len(size) == 2):
            raise Defect("bad_rle", "RLE has no [height, width] size")
        if [int(size[0]), int(size[1])] != [height, width]:
            raise Defect("rle_size_mismatch", f"RLE size {size} differs from the image's [{height}, {width}]")
        if isinstance(counts, list):
            pixels = masks.uncompressed_rle_pixels(counts)
        elif isinstance(counts, str) and counts:
            known = checked.get(counts) if checked is not None else None
            pixels = masks.rle_pixels(counts.encode()) if known is None else known
        else:
            raise Defect("bad_rle", "RLE counts must be a non-empty string or a list of runs")
        if pixels < 0:
            what = "run lengths" if isinstance(counts, list) else "counts string"
            raise Defect("bad_rle", f"RLE does not decode: malformed {what}")
        if pixels != area:
            raise Defect("bad_rle", f"RLE does not decode: runs cover {pixels} pixels, the image has {area}")
        if isinstance(counts, str):
            rle = {"size": [height, width], "counts": counts.encode()}
        else:
            rle = masks.to_compressed(seg, height, width)
    elif isinstance(seg, list) and masks.polygon_ok(seg):
        rle = masks.to_compressed(seg, height, width)
    else:
        raise Defect("bad_rle", "segmentation is neither an RLE object nor a list of polygons")
    if masks.area(rle) == 0:
        raise Defect("bad_rle", "mask is empty")
    return bytes(rle["counts"]).decode()


def check_box(box: Any, height: int, width: int, normalised: bool) -> list[float]:
    """A normalised xywh box inside the image with positive size."""
    if not (isinstance(box, list | tuple) and len(box) == 4):
        raise Defect("bad_box", f"box must be [x, y, w, h], got {box!r}")
    try:
        x, y, w, h = (float(v) for v in box)
    except (TypeError, ValueError):
        raise Defect("bad_box", f"box has a non-number: {box!r}") from None
    if not normalised:
        x, y, w, h = x / width, y / height, w / width, h / height
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        raise Defect("bad_box", f"box has a non-finite value: {box!r}")
    if w <= 0 or h <= 0:
        raise Defect("bad_box", f"box has non-positive size: {box!r}")
    if x < -_BOX_EPS or y < -_BOX_EPS or x + w > 1 + _BOX_EPS or y + h > 1 + _BOX_EPS:
        raise Defect("bad_box", f"box lies outside the image: {box!r}")
    return [x, y, w, h]


def _box_of(counts: str, height: int, width: int) -> list[float]:
    x, y, w, h = masks.box_xywh({"size": [height, width], "counts": counts})
    return [x / width, y / height, w / width, h / height]


def _image_instance(ann: dict[str, Any], plan: MediaPlan, index: int, checked: Checked) -> Instance:
    h, w = plan.height, plan.width
    seg = ann.get("segmentation")
    counts = to_rle_counts(seg, h, w, checked) if seg not in (None, [], {}) else None
    box = ann.get("bbox")
    if box is not None:
        boxv = check_box(box, h, w, plan.box_mode == "normalised")
    elif counts is not None:
        boxv = _box_of(counts, h, w)
    else:
        raise Defect("bad_box", "annotation has neither a box nor a mask")
    return Instance(object_id=index, boxes=[boxv], masks=[counts], crowd=bool(ann.get("iscrowd", 0)))


def _video_instance(ann: dict[str, Any], plan: MediaPlan, index: int, checked: Checked) -> Instance:
    h, w, n = plan.height, plan.width, len(plan.frame_paths)
    segs = ann.get("segmentations") or []
    boxes_in = ann.get("bboxes") or [None] * len(segs)
    if len(segs) != n or len(boxes_in) != n:
        raise Defect("bad_record", f"masklet has {len(segs)} masks and {len(boxes_in)} boxes for {n} frames")
    boxes: list[list[float] | None] = []
    masks: list[str | None] = []
    for t, (seg, box) in enumerate(zip(segs, boxes_in, strict=True)):
        try:
            counts = to_rle_counts(seg, h, w, checked) if seg is not None else None
            if box is not None:
                boxes.append(check_box(box, h, w, normalised=False))
            else:
                boxes.append(_box_of(counts, h, w) if counts is not None else None)
        except Defect as d:
            raise Defect(d.code, f"frame {t}: {d.reason}") from None
        masks.append(counts)
    if all(m is None for m in masks) and all(b is None for b in boxes):
        raise Defect("bad_rle", "masklet is empty in every frame")
    return Instance(object_id=index, boxes=boxes, masks=masks, crowd=bool(ann.get("iscrowd", 0)))


def check_query(raw: RawQuery, plan: MediaPlan, checked: Checked) -> Query:
    if raw.spoiled is not None:
        raise Defect("bad_record", raw.spoiled[1])
    build = _video_instance if plan.kind == "video" else _image_instance
    instances = []
    for i, (label, ann) in enumerate(raw.annotations):
        try:
            instances.append(build(ann, plan, i, checked))
        except Defect as d:
            raise Defect(d.code, f"{label}: {d.reason}") from None
    if raw.expected_masklets is not None and raw.expected_masklets != len(instances):
        raise Defect(
            "bad_record", f"num_masklets is {raw.expected_masklets} but {len(instances)} masklets exist"
        )
    return Query(
        query_id=raw.query_id,
        origin_id=raw.origin_id,
        noun_phrase=raw.noun_phrase,
        positive=bool(instances),
        exhaustive=raw.exhaustive,
        instances=instances,
    )


def build_record(
    plan: MediaPlan, files: SourceFiles, limits: Limits
) -> tuple[MediaRecord | None, list[Reject]]:
    """Read and check one media item; return the record (None if the media is rejected) and its rejects."""
    rejects: list[Reject] = []
    frames: list[bytes] = []
    for path in plan.frame_paths:
        where = files.display(path)
        try:
            data = files.read(path)
            check_image(data, plan.width, plan.height, limits)
        except DataError:
            rejects.append(
                Reject(
                    source=plan.source,
                    file=plan.file,
                    record=plan.record,
                    code="image_missing",
                    reason=f"image file not found: {where}",
                )
            )
            return None, rejects
        except Defect as d:
            rejects.append(
                Reject(source=plan.source, file=where, record=plan.record, code=d.code, reason=d.reason)
            )
            return None, rejects
        frames.append(data)
    queries: list[Query] = []
    checked = checked_strings(plan)
    for raw in plan.queries:
        try:
            queries.append(check_query(raw, plan, checked))
        except Defect as d:
            rejects.append(
                Reject(source=plan.source, file=plan.file, record=raw.record, code=d.code, reason=d.reason)
            )
    if not queries:
        return None, rejects
    record = MediaRecord(
        media_id=plan.media_id,
        source=plan.source,
        kind=plan.kind,
        origin=plan.origin,
        width=plan.width,
        height=plan.height,
        frames=frames,
        queries=queries,
    )
    return record, rejects


__all__ = ["Defect", "Limits", "build_record", "check_box", "check_image", "to_rle_counts"]
