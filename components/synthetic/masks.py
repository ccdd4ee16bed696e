"""Binary masks to COCO compressed RLE and boxes."""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils


def encode(mask: np.ndarray) -> dict[str, object]:
    """COCO compressed RLE of a boolean (H, W) mask: ``{"size": [h, w], "counts": str}``."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    counts = rle["counts"]
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": counts.decode("ascii")}


def box_xywh(rle: dict[str, object]) -> list[float]:
    """Tight [x, y, w, h] box of an RLE mask, in pixels."""
    coco = {"size": rle["size"], "counts": str(rle["counts"]).encode("ascii")}
    return [float(v) for v in mask_utils.toBbox(coco)]


def normalised(box: list[float], width: int, height: int) -> list[float]:
    """A pixel [x, y, w, h] box divided by the image size, rounded to 6 decimals."""
    x, y, w, h = box
    return [round(x / width, 6), round(y / height, 6), round(w / width, 6), round(h / height, 6)]
