"""Drawing: backgrounds, coloured shapes, their masks, and single-image scenes.

How hard the task is comes from the constants below. The attributes are only
told apart by looking: shapes by outline (squares stay within 12 degrees of
upright, diamonds are tall rhombi, so the two never look alike), colours by hue
(six well-separated hues, jittered per object, on a desaturated background),
sizes by extent (the small and large ranges do not overlap), textures by light
stripes across the object (about 3.5 stripe periods per object at any size, the
light stripes keep a tint of the colour). Objects overlap; later ones occlude
earlier ones, and no object is left less than ``MIN_VISIBLE`` visible.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from components.synthetic.ontology import COLOURS, SHAPES, SIZES, TEXTURES

REFERENCE_SIZE = 224
EXTENT_PX = {"small": (16.0, 28.0), "large": (40.0, 64.0)}
"""Object extent (diameter / side / height) in pixels at REFERENCE_SIZE; scaled with the image."""
RGB = {
    "red": (210, 40, 40),
    "green": (40, 165, 60),
    "blue": (40, 80, 215),
    "yellow": (230, 205, 35),
    "purple": (140, 55, 185),
    "orange": (240, 130, 25),
}
COLOUR_JITTER = 14.0
"""Uniform per-channel jitter of an object's colour."""
STRIPE_LIGHT = 0.65
"""How far a light stripe is blended towards white (the rest keeps the object's colour)."""
STRIPES_PER_OBJECT = 3.5
NOISE = 6
"""Per-pixel uniform integer noise in [-NOISE, NOISE] on the finished image."""
MIN_VISIBLE = 0.5
"""An object in an image scene keeps at least this fraction of its pixels visible."""
ROTATION_DEG = {"circle": 0.0, "square": 12.0, "triangle": 12.0, "diamond": 8.0}
_SUBPIXEL_BITS = 4
_PLACEMENT_TRIES = 64

assert tuple(RGB) == COLOURS and tuple(EXTENT_PX) == SIZES


@dataclass(frozen=True)
class ObjectStyle:
    """Everything about an object's look except where it is."""

    attributes: dict[str, str]
    extent: float
    rotation: float
    rgb: tuple[float, float, float]
    stripe_angle: float
    stripe_phase: float

    @property
    def radius(self) -> float:
        """Half-size of a square that contains the shape around its centre."""
        return 0.6 * self.extent


@dataclass(frozen=True)
class SceneObject:
    """A placed object: its style, centre, full (unoccluded) mask and visible mask."""

    style: ObjectStyle
    centre: tuple[float, float]
    mask: np.ndarray
    visible: np.ndarray

    @property
    def attributes(self) -> dict[str, str]:
        return self.style.attributes


@dataclass(frozen=True)
class Scene:
    """An RGB image (H, W, 3) uint8 and its objects in drawing order (later on top)."""

    image: np.ndarray
    objects: tuple[SceneObject, ...]


def sample_style(rng: np.random.Generator, image_size: int) -> ObjectStyle:
    """A random object: uniform attributes, then extent, pose, colour jitter and stripe pattern."""
    attributes = {
        "shape": SHAPES[int(rng.integers(len(SHAPES)))],
        "colour": COLOURS[int(rng.integers(len(COLOURS)))],
        "size": SIZES[int(rng.integers(len(SIZES)))],
        "texture": TEXTURES[int(rng.integers(len(TEXTURES)))],
    }
    lo, hi = EXTENT_PX[attributes["size"]]
    extent = float(rng.uniform(lo, hi)) * image_size / REFERENCE_SIZE
    limit = ROTATION_DEG[attributes["shape"]]
    rgb = np.clip(np.array(RGB[attributes["colour"]]) + rng.uniform(-COLOUR_JITTER, COLOUR_JITTER, 3), 0, 255)
    return ObjectStyle(
        attributes=attributes,
        extent=extent,
        rotation=float(rng.uniform(-limit, limit)),
        rgb=(float(rgb[0]), float(rgb[1]), float(rgb[2])),
        stripe_angle=float(rng.uniform(0.0, math.pi)),
        stripe_phase=float(rng.uniform()),
    )


def outline(style: ObjectStyle, centre: tuple[float, float]) -> np.ndarray:
    """The shape's polygon, (N, 2) float pixel coordinates (x, y)."""
    e = style.extent
    shape = style.attributes["shape"]
    if shape == "circle":
        t = np.linspace(0.0, 2 * math.pi, 48, endpoint=False)
        pts = np.stack([np.cos(t), np.sin(t)], axis=1) * (e / 2)
    elif shape == "square":
        a = 0.45 * e
        pts = np.array([[-a, -a], [a, -a], [a, a], [-a, a]])
    elif shape == "triangle":  # equilateral, side e, pointing up, centred on its centroid
        r = e / math.sqrt(3.0)
        angles = np.deg2rad([-90.0, 30.0, 150.0])
        pts = np.stack([np.cos(angles), np.sin(angles)], axis=1) * r
    else:  # diamond: a tall rhombus
        pts = np.array([[0.0, -e / 2], [0.35 * e, 0.0], [0.0, e / 2], [-0.35 * e, 0.0]])
    theta = math.radians(style.rotation)
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    return pts @ rot.T + np.asarray(centre)


def shape_mask(style: ObjectStyle, centre: tuple[float, float], height: int, width: int) -> np.ndarray:
    """Boolean (H, W) mask of the whole shape (pixel centres inside the outline)."""
    canvas = np.zeros((height, width), np.uint8)
    scale = 1 << _SUBPIXEL_BITS
    # cv2 samples pixel (i, j) at (i, j); shift by -0.5 so pixel centres are at half-integers
    pts = np.round((outline(style, centre) - 0.5) * scale).astype(np.int32)
    cv2.fillPoly(canvas, [pts], 1, lineType=cv2.LINE_8, shift=_SUBPIXEL_BITS)
    return canvas.astype(bool)


def paint(canvas: np.ndarray, mask: np.ndarray, style: ObjectStyle, centre: tuple[float, float]) -> None:
    """Fill ``mask`` of a float (H, W, 3) canvas with the object's colour (and light stripes)."""
    ys, xs = np.nonzero(mask)
    colour = np.asarray(style.rgb, np.float32)
    if style.attributes["texture"] == "solid":
        canvas[ys, xs] = colour
        return
    period = max(4.0, style.extent / STRIPES_PER_OBJECT)
    u = (xs - centre[0]) * math.cos(style.stripe_angle) + (ys - centre[1]) * math.sin(style.stripe_angle)
    light = np.mod(u / period + style.stripe_phase, 1.0) < 0.5
    light_colour = (1 - STRIPE_LIGHT) * colour + STRIPE_LIGHT * 245.0
    canvas[ys, xs] = np.where(light[:, None], light_colour, colour)


def background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A float (H, W, 3) desaturated background: a tinted grey with gentle low-frequency variation."""
    grey = rng.uniform(105.0, 195.0)
    tint = rng.uniform(-8.0, 8.0, 3)
    coarse = rng.uniform(-18.0, 18.0, (4, 4, 1)) + rng.uniform(-4.0, 4.0, (4, 4, 3))
    # cubic to 16 x 16, then linear: as smooth as cubic all the way, at a tenth of the cost
    coarse16 = cv2.resize(coarse.astype(np.float32), (16, 16), interpolation=cv2.INTER_CUBIC)
    smooth = np.asarray(cv2.resize(coarse16, (width, height), interpolation=cv2.INTER_LINEAR), np.float32)
    grain = cv2.GaussianBlur(rng.integers(-12, 13, (height, width)).astype(np.float32), (0, 0), 1.2)
    level = (grey + tint).astype(np.float32)
    out: np.ndarray = smooth + level + np.asarray(grain, np.float32)[:, :, None]
    return out


def finish(rng: np.random.Generator, canvas: np.ndarray) -> np.ndarray:
    """Add pixel noise and quantise a float canvas to uint8 RGB."""
    noisy = canvas + rng.integers(-NOISE, NOISE + 1, canvas.shape, dtype=np.int16)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


def visible_masks(masks: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The visible part of each mask when drawn in order (later masks occlude earlier ones)."""
    covered = np.zeros_like(masks[0]) if masks else np.zeros((0, 0), bool)
    out: list[np.ndarray] = []
    for mask in reversed(masks):
        out.append(mask & ~covered)
        covered = covered | mask
    return out[::-1]


Backdrop = Callable[[np.random.Generator, int, int], np.ndarray]


def sample_scene(rng: np.random.Generator, size: int, backdrop: Backdrop | None = None) -> Scene:
    """A size x size image with 3-6 objects, each at least ``MIN_VISIBLE`` visible, on ``backdrop``
    (default: ``background``; the EXT source draws another domain's, components.synthetic.sources)."""
    wanted = int(rng.integers(3, 7))
    styles: list[ObjectStyle] = []
    centres: list[tuple[float, float]] = []
    masks: list[np.ndarray] = []
    visible: list[np.ndarray] = []
    for _ in range(wanted):
        style = sample_style(rng, size)
        r = style.radius
        for _ in range(_PLACEMENT_TRIES):  # an object that finds no place is left out
            centre = (float(rng.uniform(r, size - r)), float(rng.uniform(r, size - r)))
            mask = shape_mask(style, centre, size, size)
            still = [v & ~mask for v in visible]
            if all(s.sum() >= MIN_VISIBLE * m.sum() for s, m in zip(still, masks, strict=True)):
                styles.append(style)
                centres.append(centre)
                masks.append(mask)
                visible = [*still, mask]
                break
    canvas = (backdrop or background)(rng, size, size)
    for style, centre, mask in zip(styles, centres, masks, strict=True):
        paint(canvas, mask, style, centre)
    objects = tuple(
        SceneObject(style=s, centre=c, mask=m, visible=v)
        for s, c, m, v in zip(styles, centres, masks, visible, strict=True)
    )
    return Scene(image=finish(rng, canvas), objects=objects)
