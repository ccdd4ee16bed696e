"""Deterministic randomness and file writing shared by the split writers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

STREAMS = {"train": 1, "gold": 2, "video_train": 3, "video_gold": 4, "syn_train": 5, "ext_train": 6}
"""Each split draws from its own random stream, so one split's size never changes another's content."""

JPEG_QUALITY = 90


def item_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator for one media item: depends only on (seed, split, index).

    Item ``i`` is therefore the same whatever the number of items requested,
    and a test can rebuild any item's scene on its own.
    """
    return np.random.default_rng([seed, STREAMS[split], index])


def save_jpeg(path: Path, image: np.ndarray) -> None:
    """Write an (H, W, 3) uint8 RGB array as a JPEG (quality 90)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image, mode="RGB").save(path, format="JPEG", quality=JPEG_QUALITY)


def write_json(path: Path, document: object, *, indent: int | None = None) -> None:
    """Write JSON with sorted keys (compact unless ``indent``), so equal content gives equal bytes."""
    separators = (",", ":") if indent is None else (",", ": ")
    path.write_text(json.dumps(document, sort_keys=True, indent=indent, separators=separators) + "\n")
