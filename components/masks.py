"""Masks as COCO run-length encodings: checking, converting, encoding; ingest and evaluation share it.

pycocotools converts (polygons and run-length lists to compressed strings), encodes,
measures (area, box) and compares masks. It trusts its input, though: a compressed
string whose last character asks for more digits makes it read past the end of the
string (it hangs or crashes), and run lengths that do not add up to height x width
give silently wrong areas. So every mask from outside is checked here first. The
compressed strings of a whole file are decoded together with numpy (a few vectorised
passes over their characters, in chunks; no Python loop per mask), following the
format pycocotools' ``rleFrString`` reads:

- each character is ``48 + six bits``; a value is a little-endian group of 5-bit
  digits, the 0x20 bit of a character says another digit follows, and the 0x10 bit
  of a group's last character makes the value negative;
- from the fourth value on, a value is a delta on the value two places earlier.

A well-formed mask has every run length in [0, 2**32) and the lengths add up to
height x width.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import pycocotools.mask as mask_utils

_MAX_DIGITS = 7  # 35 bits: more than any uint32 run length needs
_UINT32_LIMIT = 1 << 32
_CHUNK_CHARS = 1 << 21  # masks are checked in chunks of about this many characters (memory stays warm)
# value of a one-character group: the low five bits, sign-extended from bit 4
_DIGIT_VALUE = np.array([((v & 0x1F) ^ 0x10) - 0x10 for v in range(64)], dtype=np.int64)


def compressed_rle_pixels(blob: bytes, offsets: np.ndarray) -> np.ndarray:
    """The pixels each compressed RLE string covers (the sum of its run lengths), -1 where malformed.

    blob: N compressed ``counts`` strings back to back, string i is
    ``blob[offsets[i]:offsets[i + 1]]``. Malformed: a character outside '0'..'o', a group
    that runs past the end of its string or over 7 digits, a run outside [0, 2**32).
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    n = len(offsets) - 1
    chars = np.frombuffer(blob, dtype=np.uint8)
    pixels = np.empty(n, dtype=np.int64)
    bounds = np.searchsorted(offsets[1:], np.arange(_CHUNK_CHARS, int(offsets[-1]), _CHUNK_CHARS))
    edges = [0, *np.unique(bounds[bounds > 0]).tolist(), n]
    for a, b in itertools.pairwise(edges):
        if b > a:
            pixels[a:b] = _chunk_pixels(chars[offsets[a] : offsets[b]], offsets[a : b + 1] - offsets[a])
    return pixels


def compressed_rles_ok(blob: bytes, offsets: np.ndarray, areas: np.ndarray) -> np.ndarray:
    """(N,) bool: which compressed RLE strings (as ``compressed_rle_pixels`` takes them) are well formed
    and tile a mask of ``areas[i]`` (height x width) pixels."""
    return compressed_rle_pixels(blob, offsets) == np.asarray(areas, dtype=np.int64)


def rle_pixels(counts: bytes) -> int:
    """The pixels one compressed RLE string covers, -1 when it is malformed."""
    return int(compressed_rle_pixels(counts, np.array([0, len(counts)]))[0])


def _chunk_pixels(chars: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    n = len(offsets) - 1
    lengths = np.diff(offsets)
    ok = np.ones(n, dtype=bool)
    nonempty = lengths > 0
    if not nonempty.any():
        return np.zeros(n, dtype=np.int64)
    start = offsets[:-1]
    last = (start + lengths - 1)[nonempty]
    digits = chars - np.uint8(48)  # wraps below '0'

    def mark_bad(char_positions: np.ndarray) -> None:
        ok[np.unique(np.searchsorted(start, char_positions, side="right") - 1)] = False

    if digits.max() > 63:  # characters outside '0'..'o'
        bad = np.flatnonzero(digits > 63)
        mark_bad(bad)
        digits[bad] = 0
    more = digits >= 32  # the 0x20 bit: another digit follows
    ok[nonempty] &= ~more[last]  # else pycocotools reads past the end of the string
    more[last] = False  # so that no group runs into the next mask

    # multi-character groups are rare: their values are computed on the side
    cont = np.flatnonzero(more)
    group_ends = np.zeros(0, dtype=np.int64)
    if len(cont):
        first_of_run = np.concatenate(([True], np.diff(cont) != 1))
        run_start = cont[first_of_run]
        group_ends = cont[np.concatenate((first_of_run[1:], [True]))] + 1
        n_digits = group_ends - run_start + 1
        mark_bad(run_start[n_digits > _MAX_DIGITS])
        n_digits = np.minimum(n_digits, _MAX_DIGITS)
        multi_value = np.zeros(len(run_start), dtype=np.int64)
        for k in range(int(n_digits.max())):
            pos = np.minimum(run_start + k, group_ends)
            multi_value += np.where(k < n_digits, (digits[pos] & 0x1F).astype(np.int64) << (5 * k), 0)
        negative = (digits[group_ends] & 0x10) != 0
        multi_value -= np.where(negative, np.left_shift(1, 5 * n_digits), 0)

    # one value per group, in order; then the runs, per mask: v[j] += v[j - 2] from j = 3 on
    values = _DIGIT_VALUE[digits[~more]]
    if len(cont):
        values[group_ends - np.searchsorted(cont, group_ends)] = multi_value
    n_groups = lengths - (np.searchsorted(cont, start + lengths) - np.searchsorted(cont, start))
    group_start = (np.cumsum(n_groups) - n_groups)[nonempty]
    first_value = values[group_start].copy()
    values[group_start] = 0
    total = np.zeros(n, dtype=np.int64)
    total[nonempty] = first_value
    bad_run = np.zeros(n, dtype=bool)
    bad_run[nonempty] = (first_value < 0) | (first_value >= _UINT32_LIMIT)
    group_end = group_start + n_groups[nonempty]
    for parity in (0, 1):
        # every mask's same-parity groups sit in one of these two strided views, contiguous
        view = values[parity::2]
        lo, hi = (group_start - parity + 1) // 2, (group_end - parity + 1) // 2
        has = hi > lo
        owner = np.flatnonzero(nonempty)[has]
        lo = lo[has]
        raw = np.add.reduceat(view, lo)
        view[lo[1:]] -= raw[:-1]  # the running sum restarts at each mask
        runs = np.cumsum(view, out=view)
        out_of_range = (np.minimum.reduceat(runs, lo) < 0) | (np.maximum.reduceat(runs, lo) >= _UINT32_LIMIT)
        bad_run[owner] |= out_of_range
        total[owner] += np.add.reduceat(runs, lo)
    return np.where(ok & ~bad_run, total, -1)


def uncompressed_rle_pixels(counts: Sequence[int]) -> int:
    """The pixels an uncompressed RLE (a list of run lengths) covers, -1 unless every run is an integer in
    [0, 2**32)."""
    if len(counts) == 0:
        return 0
    try:
        runs = np.asarray(counts)
    except (TypeError, ValueError):  # ragged
        return -1
    if runs.ndim != 1 or runs.dtype.kind not in "iu" or runs.min() < 0 or runs.max() >= _UINT32_LIMIT:
        return -1
    return int(runs.sum(dtype=np.int64))


def uncompressed_rle_ok(counts: Sequence[int], area: int) -> bool:
    """An uncompressed RLE (a list of run lengths) tiles a mask of ``area`` pixels."""
    return uncompressed_rle_pixels(counts) == area


def polygon_ok(polygons: Sequence[Sequence[float]]) -> bool:
    """COCO polygons: a non-empty list of rings, each a list of an even number (>= 6) of finite numbers."""
    if len(polygons) == 0:
        return False
    for ring in polygons:
        if not isinstance(ring, list | tuple) or len(ring) < 6 or len(ring) % 2:
            return False
        try:
            if not np.isfinite(np.asarray(ring, dtype=np.float64)).all():
                return False
        except (TypeError, ValueError):  # not numbers
            return False
    return True


def to_compressed(segmentation: Any, height: int, width: int) -> dict[str, Any]:
    """An uncompressed RLE or polygons (already checked) as a compressed RLE, as pycocotools' annToRLE."""
    if isinstance(segmentation, list):
        return dict(mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width)))
    return dict(mask_utils.frPyObjects(segmentation, height, width))


def empty_rle(height: int, width: int) -> dict[str, Any]:
    """An all-background mask (a masklet's frame where the object is absent), compressed: one run."""
    return dict(mask_utils.frPyObjects({"size": [height, width], "counts": [height * width]}, height, width))


def area(rle: dict[str, Any]) -> int:
    """Foreground pixels of a checked compressed RLE."""
    return int(mask_utils.area(rle))


AREA_CHUNK = 255
"""pycocotools 2.0.11 ``area`` fails on more than 255 masks in one call (its count overflows a uint8)."""


def areas(rles: Sequence[dict[str, Any]]) -> np.ndarray:
    """(N,) foreground pixels of checked compressed RLEs, ``mask_utils.area`` in chunks it can take."""
    parts = [mask_utils.area(list(rles[i : i + AREA_CHUNK])) for i in range(0, len(rles), AREA_CHUNK)]
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)


def encode(mask: np.ndarray) -> dict[str, object]:
    """COCO compressed RLE of a boolean (H, W) mask: ``{"size": [h, w], "counts": str}``."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    counts = rle["counts"]
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": counts.decode("ascii")}


def encode_frames(masks: np.ndarray) -> list[dict[str, Any]]:
    """Compressed RLEs (``counts`` as bytes, as pycocotools gives them) of each mask of a (T, H, W) stack, or
    of one (H, W) mask."""
    stack = masks[None] if masks.ndim == 2 else masks
    return list(mask_utils.encode(np.asfortranarray(stack.transpose(1, 2, 0).astype(np.uint8))))


def box_xywh(rle: dict[str, object]) -> list[float]:
    """Tight [x, y, w, h] box of an RLE mask, in pixels."""
    coco = {"size": rle["size"], "counts": str(rle["counts"]).encode("ascii")}
    return [float(v) for v in mask_utils.toBbox(coco)]


def normalised(box: list[float], width: int, height: int) -> list[float]:
    """A pixel [x, y, w, h] box divided by the image size, rounded to 6 decimals."""
    x, y, w, h = box
    return [round(x / width, 6), round(y / height, 6), round(w / width, 6), round(h / height, 6)]
