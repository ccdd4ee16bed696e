"""Small hand-made inputs in the three formats ingest accepts, for tests."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils


def jpeg(width: int, height: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=85)
    return buf.getvalue()


def rle(mask: np.ndarray) -> dict[str, Any]:
    r = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": r["counts"].decode()}


def box_mask(h: int, w: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[y0:y1, x0:x1] = 1
    return m


def write_saco(folder: Path, n_images: int = 4, size: int = 32, seed: int = 0) -> dict[str, Any]:
    """An SA-Co image split: each image gets a positive pair (2 boxes) and a negative pair."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for i in range(n_images):
        fn = f"img{i:03d}.jpg"
        (folder / "images" / fn).write_bytes(jpeg(size, size, seed + i))
        pos, neg = 2 * i + 1, 2 * i + 2
        images.append(
            {
                "id": pos,
                "file_name": fn,
                "text_input": "red square",
                "width": size,
                "height": size,
                "is_instance_exhaustive": True,
            }
        )
        images.append(
            {
                "id": neg,
                "file_name": fn,
                "text_input": "blue circle",
                "width": size,
                "height": size,
                "is_instance_exhaustive": True,
            }
        )
        for j, (x0, y0, x1, y1) in enumerate([(2, 2, 10, 12), (15, 16, 30, 31)]):
            m = box_mask(size, size, x0, y0 + (i % 2), x1, y1)
            ys, xs = np.nonzero(m)
            anns.append(
                {
                    "id": 100 * i + j + 1,
                    "image_id": pos,
                    "iscrowd": 0,
                    "area": int(m.sum()),
                    "bbox": [
                        xs.min() / size,
                        ys.min() / size,
                        (xs.max() + 1 - xs.min()) / size,
                        (ys.max() + 1 - ys.min()) / size,
                    ],
                    "segmentation": rle(m),
                }
            )
    doc = {
        "images": images,
        "annotations": anns,
        "categories": [{"id": 1, "name": "red square"}, {"id": 2, "name": "blue circle"}],
    }
    (folder / "annotations.json").write_text(json.dumps(doc))
    return doc


def write_coco(folder: Path, n_images: int = 3, size: int = 40) -> dict[str, Any]:
    """Plain COCO detection with polygons and an uncompressed-RLE crowd; 3 categories."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for i in range(n_images):
        fn = f"c{i}.jpg"
        (folder / "images" / fn).write_bytes(jpeg(size, size, 50 + i))
        images.append({"id": i + 1, "file_name": fn, "width": size, "height": size})
        anns.append(
            {
                "id": 10 * i + 1,
                "image_id": i + 1,
                "category_id": 1,
                "iscrowd": 0,
                "bbox": [4, 4, 10, 10],
                "segmentation": [[4, 4, 14, 4, 14, 14, 4, 14]],
                "area": 100,
            }
        )
        if i == 0:
            counts = [0] * 0 + [size * 5, 20, size * size - size * 5 - 20]
            anns.append(
                {
                    "id": 99,
                    "image_id": 1,
                    "category_id": 2,
                    "iscrowd": 1,
                    "bbox": [5, 0, 1, 20],
                    "segmentation": {"size": [size, size], "counts": counts},
                    "area": 20,
                }
            )
    doc = {
        "images": images,
        "annotations": anns,
        "categories": [{"id": 1, "name": "dog"}, {"id": 2, "name": "cat"}, {"id": 3, "name": "zebra"}],
    }
    (folder / "annotations.json").write_text(json.dumps(doc))
    return doc


def write_video(folder: Path, n_videos: int = 2, frames: int = 4, size: int = 32) -> dict[str, Any]:
    """SA-Co video: one masklet hidden in frame 1, a negative pair per video."""
    videos, anns, pairs = [], [], []
    for v in range(n_videos):
        vid = v + 1
        names = []
        for t in range(frames):
            rel = f"{vid:03d}/{t:03d}.jpg"
            (folder / "images" / f"{vid:03d}").mkdir(parents=True, exist_ok=True)
            (folder / "images" / rel).write_bytes(jpeg(size, size, 1000 * vid + t))
            names.append(rel)
        videos.append({"id": vid, "file_names": names, "width": size, "height": size, "length": frames})
        segs, boxes, areas = [], [], []
        for t in range(frames):
            if t == 1:
                segs.append(None)
                boxes.append(None)
                areas.append(None)
                continue
            m = box_mask(size, size, 2 + t, 3, 12 + t, 13)
            segs.append(rle(m))
            boxes.append([2 + t, 3, 10, 10])
            areas.append(100)
        anns.append(
            {
                "id": vid,
                "video_id": vid,
                "category_id": 1,
                "noun_phrase": "ball",
                "iscrowd": 0,
                "segmentations": segs,
                "bboxes": boxes,
                "areas": areas,
            }
        )
        pairs.append(
            {"id": 2 * vid, "video_id": vid, "category_id": 1, "noun_phrase": "ball", "num_masklets": 1}
        )
        pairs.append(
            {"id": 2 * vid + 1, "video_id": vid, "category_id": 2, "noun_phrase": "kite", "num_masklets": 0}
        )
    doc = {
        "videos": videos,
        "annotations": anns,
        "video_np_pairs": pairs,
        "categories": [{"id": 1, "name": "ball"}, {"id": 2, "name": "kite"}],
    }
    (folder / "annotations.json").write_text(json.dumps(doc))
    return doc
