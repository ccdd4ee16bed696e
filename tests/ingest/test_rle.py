"""The RLE check (components.masks) agrees with pycocotools' decoder on valid and corrupted strings; ingest's
reasons for a bad mask."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from components.ingest.validate import Defect, to_rle_counts
from components.masks import rle_pixels


def test_agrees_with_pycocotools_on_what_it_accepts() -> None:
    """Every string the check accepts decodes in pycocotools to the same pixels.

    The other direction cannot be tested in-process: pycocotools accepts some corrupted strings whose runs
    cover fewer pixels than the image (the tail of the mask is then uninitialised memory) and aborts the
    interpreter on others; that is why ingest checks the structure before pycocotools sees a string.
    """
    rng = np.random.default_rng(0)
    accepted = rejected = 0
    for _ in range(400):
        h, w = int(rng.integers(1, 40)), int(rng.integers(1, 40))
        m = (rng.random((h, w)) < rng.uniform(0.05, 0.9)).astype(np.uint8)
        counts = mask_utils.encode(np.asfortranarray(m))["counts"]
        assert rle_pixels(counts) == h * w
        assert np.array_equal(mask_utils.decode({"size": [h, w], "counts": counts}), m)
        variants = [counts[:-1], counts + b"1", counts[1:], bytes([counts[0] ^ 0x01]) + counts[1:], b"", b"o"]
        for _ in range(3):
            pos = int(rng.integers(0, len(counts)))
            variants.append(counts[:pos] + bytes([int(rng.integers(48, 112))]) + counts[pos + 1 :])
        for v in variants:
            if rle_pixels(v) != h * w:
                rejected += 1
                continue
            accepted += 1
            decoded = mask_utils.decode({"size": [h, w], "counts": v})
            assert int(decoded.sum()) == int(mask_utils.area({"size": [h, w], "counts": v}))
    assert accepted >= 10 and rejected > 2500  # corrupted strings that stay valid are rare


def test_to_rle_counts_reasons() -> None:
    m = np.zeros((8, 8), np.uint8, order="F")
    m[1:3, 1:3] = 1
    good = mask_utils.encode(m)["counts"].decode()
    assert to_rle_counts({"size": [8, 8], "counts": good}, 8, 8) == good
    seven_by_nine = mask_utils.encode(np.asfortranarray(np.ones((7, 9), np.uint8)))["counts"].decode()
    with pytest.raises(Defect, match="runs cover 63 pixels, the image has 64"):
        to_rle_counts({"size": [8, 8], "counts": seven_by_nine}, 8, 8)
    empty = mask_utils.encode(np.zeros((8, 8), np.uint8, order="F"))["counts"].decode()
    with pytest.raises(Defect, match="mask is empty"):
        to_rle_counts({"size": [8, 8], "counts": empty}, 8, 8)
    with pytest.raises(Defect, match="differs from the image"):
        to_rle_counts({"size": [4, 16], "counts": good}, 8, 8)
    with pytest.raises(Defect, match="non-empty string"):
        to_rle_counts({"size": [8, 8], "counts": ""}, 8, 8)
    poly = to_rle_counts([[1, 1, 6, 1, 6, 6, 1, 6]], 8, 8)
    assert mask_utils.area({"size": [8, 8], "counts": poly.encode()}) > 0
