"""Video splits in the SA-Co video format (YT-VIS-like).

``<split>/images/<video_id:05d>/<frame:05d>.jpg`` and ``<split>/annotations.json``
with ``videos[]``, ``annotations[]`` (one masklet per object per queried noun
phrase: per-frame RLE, absolute pixel box and area, ``null`` where the object
is not visible), ``categories[]`` and ``video_np_pairs[]`` (``num_masklets ==
0`` marks a negative). Video ids count from 1, frames from 0.

A clip holds 2-4 objects moving at constant velocity, bouncing off the
borders, and one opaque grey bar spanning the frame. One object (the
*crosser*) is sent straight through the bar so that it is fully hidden for a
few frames and re-appears with the same identity; a clip is redrawn until
that happens and every object is seen at least once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from components import masks
from components.errors import DataError
from components.progress import Progress
from components.synthetic.output import item_rng, save_jpeg, write_json
from components.synthetic.queries import Query, gold_queries, train_queries
from components.synthetic.scene import (
    ObjectStyle,
    background,
    finish,
    outline,
    paint,
    sample_style,
    shape_mask,
    visible_masks,
)
from components.synthetic.summary import SplitSummary

log = logging.getLogger(__name__)


SPEED = (0.01, 0.04)
"""Speed of the free objects, as a fraction of the frame size per frame."""
_CLIP_TRIES = 100


@dataclass(frozen=True)
class Track:
    """One object through a clip: its look, per-frame centres (T, 2) and per-frame visible masks."""

    style: ObjectStyle
    centres: np.ndarray
    visible: tuple[np.ndarray, ...]

    @property
    def attributes(self) -> dict[str, str]:
        return self.style.attributes

    def seen(self) -> list[bool]:
        return [bool(v.any()) for v in self.visible]


@dataclass(frozen=True)
class Clip:
    """Rendered frames (each (H, W, 3) uint8), the tracks in drawing order, and the bar's mask."""

    frames: tuple[np.ndarray, ...]
    tracks: tuple[Track, ...]
    occluder: np.ndarray


def reappears(seen: list[bool]) -> bool:
    """Whether an object is hidden for some frames between frames where it is visible."""
    first, last = seen.index(True), len(seen) - 1 - seen[::-1].index(True)
    return not all(seen[first : last + 1])


def _bounce(start: float, velocity: float, low: float, high: float, frames: int) -> np.ndarray:
    """Positions of a point moving at constant speed between two walls, reflecting off them."""
    out = np.empty(frames)
    p, v = start, velocity
    for t in range(frames):
        out[t] = p
        p += v
        if p < low:
            p, v = 2 * low - p, -v
        elif p > high:
            p, v = 2 * high - p, -v
    return out


def _crosser_path(
    rng: np.random.Generator, style: ObjectStyle, size: int, frames: int
) -> tuple[np.ndarray, tuple[float, float]]:
    """A straight path along one axis through a bar; returns (along-axis positions, bar span)."""
    r = style.radius
    half = float(np.abs(outline(style, (0.0, 0.0))).max())  # bound on the shape's half-extent on any axis
    width = 2 * half * rng.uniform(1.1, 1.35) + 2
    centre = size / 2 + rng.uniform(-0.08, 0.08) * size
    middle = (frames - 1) / 2
    hidden_at = int(np.clip(round(middle + rng.uniform(-1.0, 1.0)), 1, frames - 2))
    before, after = hidden_at, frames - 1 - hidden_at
    slack = (width - 2 * half) / 2  # how far the centre can move while the shape stays fully hidden
    v_min = (slack + 0.5 * half) / min(before, after)
    v_max = min(centre - r, size - r - centre) / max(before, after)
    speed = rng.uniform(v_min, max(v_min, v_max))
    sign = 1.0 if rng.random() < 0.5 else -1.0
    along = centre + sign * speed * (np.arange(frames) - hidden_at)
    return along, (centre - width / 2, centre + width / 2)


def _sample_tracks(
    rng: np.random.Generator, size: int, frames: int
) -> tuple[list[ObjectStyle], np.ndarray, np.ndarray]:
    """Styles, centres (N, T, 2) and the bar mask (H, W) of a candidate clip."""
    styles = [sample_style(rng, size) for _ in range(int(rng.integers(2, 5)))]
    crosser = int(rng.integers(len(styles)))
    vertical_bar = bool(rng.random() < 0.5)  # a vertical bar is crossed moving along x
    crosser_along, (lo, hi) = _crosser_path(rng, styles[crosser], size, frames)
    centres = np.empty((len(styles), frames, 2))
    for i, style in enumerate(styles):
        r = style.radius
        if i == crosser:
            along = crosser_along
            drift = rng.uniform(-0.01, 0.01) * size
            across = _bounce(rng.uniform(r, size - r), drift, r, size - r, frames)
        else:
            angle, speed = rng.uniform(0, 2 * np.pi), rng.uniform(*SPEED) * size
            along = _bounce(rng.uniform(r, size - r), speed * np.cos(angle), r, size - r, frames)
            across = _bounce(rng.uniform(r, size - r), speed * np.sin(angle), r, size - r, frames)
        centres[i] = np.stack([along, across], axis=1) if vertical_bar else np.stack([across, along], axis=1)
    bar = np.zeros((size, size), bool)
    span = slice(int(np.floor(lo)), int(np.ceil(hi)))
    if vertical_bar:
        bar[:, span] = True
    else:
        bar[span, :] = True
    return styles, centres, bar


def sample_clip(rng: np.random.Generator, size: int, frames: int) -> Clip:
    """A clip with an occlusion and re-appearance; redrawn until the scene shows one."""
    for _ in range(_CLIP_TRIES):
        styles, centres, bar = _sample_tracks(rng, size, frames)
        full = [
            [shape_mask(s, (float(c[t, 0]), float(c[t, 1])), size, size) for t in range(frames)]
            for s, c in zip(styles, centres, strict=True)
        ]
        # per frame: the objects in drawing order, then the bar on top of them all
        layers = [visible_masks([*(f[t] for f in full), bar])[:-1] for t in range(frames)]
        tracks = tuple(
            Track(style=s, centres=centres[i], visible=tuple(layers[t][i] for t in range(frames)))
            for i, s in enumerate(styles)
        )
        seen = [track.seen() for track in tracks]
        if all(any(s) for s in seen) and any(reappears(s) for s in seen):
            break
    else:
        raise DataError(
            f"no clip with an occlusion found in {_CLIP_TRIES} tries (size={size}, frames={frames})"
        )
    base = background(rng, size, size)
    bar_grey = float(np.clip(np.mean(base) + rng.choice([-1.0, 1.0]) * rng.uniform(45.0, 70.0), 40.0, 225.0))
    images = []
    for t in range(frames):
        canvas = base.copy()
        for style, c, m in zip(styles, centres, full, strict=True):
            paint(canvas, m[t], style, (float(c[t, 0]), float(c[t, 1])))
        canvas[bar] = bar_grey
        images.append(finish(rng, canvas))
    return Clip(frames=tuple(images), tracks=tracks, occluder=bar)


def video_item(seed: int, split: str, index: int, size: int, frames: int) -> tuple[Clip, list[Query]]:
    """Video ``index`` (from 0) of ``split`` (``video_train`` or ``video_gold``): clip and queries."""
    rng = item_rng(seed, split, index)
    clip = sample_clip(rng, size, frames)
    objects = [t.attributes for t in clip.tracks]
    queries = gold_queries(rng, objects) if split == "video_gold" else train_queries(rng, objects)
    return clip, queries


def _masklet(track: Track) -> dict[str, list[object]]:
    segmentations: list[object] = []
    bboxes: list[object] = []
    areas: list[object] = []
    for mask in track.visible:
        if not mask.any():
            segmentations.append(None)
            bboxes.append(None)
            areas.append(None)
            continue
        rle = masks.encode(mask)
        segmentations.append(rle)
        bboxes.append(masks.box_xywh(rle))
        areas.append(int(np.count_nonzero(mask)))
    return {"segmentations": segmentations, "bboxes": bboxes, "areas": areas}


def write_video_split(
    out: Path,
    split: str,
    *,
    count: int,
    size: int,
    frames: int,
    seed: int,
    category_ids: dict[str, int],
    progress: Progress | None = None,
) -> SplitSummary:
    """Render ``count`` clips into ``out/split`` and write their annotations."""
    root = out / split
    videos: list[dict[str, object]] = []
    annotations: list[dict[str, object]] = []
    np_pairs: list[dict[str, object]] = []
    used: set[str] = set()
    hard = 0
    for index in range(count):
        video_id = index + 1
        clip, queries = video_item(seed, split, index, size, frames)
        names = [f"{video_id:05d}/{t:05d}.jpg" for t in range(frames)]
        for name, image in zip(names, clip.frames, strict=True):
            save_jpeg(root / "images" / name, image)
        videos.append({"id": video_id, "file_names": names, "width": size, "height": size, "length": frames})
        masklets = [_masklet(track) for track in clip.tracks]
        for query in queries:
            category = category_ids[query.noun_phrase]
            used.add(query.noun_phrase)
            hard += query.hard_negative
            np_pairs.append(
                {
                    "id": len(np_pairs) + 1,
                    "video_id": video_id,
                    "category_id": category,
                    "noun_phrase": query.noun_phrase,
                    "num_masklets": len(query.instances),
                }
            )
            for i in query.instances:
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "video_id": video_id,
                        "category_id": category,
                        "noun_phrase": query.noun_phrase,
                        "iscrowd": 0,
                        **masklets[i],
                    }
                )
        if progress is not None:
            progress(split, index + 1, count)
    categories = [{"id": category_ids[n], "name": n} for n in sorted(used, key=category_ids.__getitem__)]
    root.mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(exist_ok=True)
    document = {
        "videos": videos,
        "annotations": annotations,
        "categories": categories,
        "video_np_pairs": np_pairs,
    }
    write_json(root / "annotations.json", document)
    negatives = sum(p["num_masklets"] == 0 for p in np_pairs)
    summary = SplitSummary(
        kind="video",
        annotations=f"{split}/annotations.json",
        images=f"{split}/images",
        media=count,
        pairs=len(np_pairs),
        positive_pairs=len(np_pairs) - negatives,
        negative_pairs=negatives,
        hard_negative_pairs=hard,
        instances=len(annotations),
    )
    log.info(
        "%s: %d videos, %d pairs (%d negative, %d hard), %d masklets",
        split,
        count,
        summary.pairs,
        negatives,
        hard,
        summary.instances,
    )
    return summary
