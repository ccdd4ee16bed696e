"""Learning curves for the evaluation report: a stage's training history drawn as inline SVG charts.

The history (components.train.history) holds each step's loss terms and learning rates and, for stage 0,
the gold recognition AUC at each checkpoint. The charts need no script and fetch nothing, so the report
stays one self-contained page in the Kubeflow UI.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from itertools import cycle
from typing import Any

import numpy as np

Series = Mapping[str, Sequence[tuple[float, float]]]
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
MAX_POINTS = 500  # per series in a chart; longer series are thinned evenly


def learning_curves(history: dict[str, Any] | None) -> str:
    """Charts of a stage's history: each loss term (running mean), learning rates, checkpoint AUCs."""
    steps = (history or {}).get("steps", [])
    if not steps:
        return "<h3>Learning curves</h3><p>No training history was recorded for this checkpoint.</p>"
    window = max(1, len(steps) // 50)
    terms = dict.fromkeys(["total", *(t for s in steps for t in s["loss"])])
    losses = {t: [(s["step"], s["loss"][t]) for s in steps if t in s["loss"]] for t in terms}
    charts = "".join(
        line_chart(f"loss: {term}", {f"running mean of {window}": _running_mean(points, window)})
        for term, points in losses.items()
    )
    groups = dict.fromkeys(g for s in steps for g in s["lr"])
    lrs = {g: [(s["step"], s["lr"][g]) for s in steps if g in s["lr"]] for g in groups}
    charts += line_chart("learning rate", lrs) + _auc_chart((history or {}).get("evaluations", []))
    skipped = sum(not math.isfinite(v) for _, v in losses["total"])
    note = f"; {_count(skipped, 'step')} with a non-finite total loss not drawn" if skipped else ""
    return (
        f"<h3>Learning curves</h3><p>{_count(len(steps), 'step')} (last: {steps[-1]['step']}). "
        f"Losses are smoothed with a running mean over the last {_count(window, 'step')}{note}.</p>"
        f"<div>{charts}</div>"
    )


def _auc_chart(evaluations: list[dict[str, Any]]) -> str:
    """Recognition AUC at each in-training evaluation, overall and by phrase length, against chance."""
    aucs = {"all pairs": [(e["step"], e["recognition_AUC"]) for e in evaluations]}
    for n in sorted({n for e in evaluations for n in e.get("by_length", {})}, key=int):
        aucs[_count(int(n), "word")] = [
            (e["step"], e["by_length"][n]) for e in evaluations if n in e.get("by_length", {})
        ]
    return line_chart("recognition AUC at checkpoints", aucs, y_range=(0.0, 1.0), guides={"chance": 0.5})


def line_chart(
    title: str,
    series: Series,
    *,
    y_range: tuple[float, float] | None = None,
    guides: Mapping[str, float] | None = None,
    width: int = 380,
    height: int = 230,
) -> str:
    """An inline SVG chart of named (x, y) series: axes with tick labels, a title and a legend.

    ``guides``: label -> y of dashed horizontal lines (chance, a target). Non-finite points are left out.
    """
    series = {
        name: [(x, y) for x, y in s if math.isfinite(x) and math.isfinite(y)] for name, s in series.items()
    }
    series = {name: s for name, s in series.items() if s}
    if not series:
        return ""
    guides = guides or {}
    xs = [x for s in series.values() for x, _ in s]
    ys = [y for s in series.values() for _, y in s] + list(guides.values())
    x0, x1 = min(xs), max(xs)
    x_ticks = [x for x in _ticks(x0, x1) if x0 <= x <= x1 and x == int(x)]  # steps: whole numbers
    if x0 == x1:  # one step: centre it
        x_ticks, x0, x1 = [x0], x0 - 1, x1 + 1
    y_ticks = _ticks(*(y_range or (min(ys), max(ys))))
    y0, y1 = y_ticks[0], y_ticks[-1]
    legend, legend_height = _legend(list(series), width)
    left, right, top, bottom = 58, 24, 30 + legend_height, 36

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * (width - left - right)

    def sy(y: float) -> float:
        return height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom)

    parts = [
        f'<text x="{width / 2}" y="16" text-anchor="middle" font-weight="bold">{html.escape(title)}</text>'
    ]
    for y in y_ticks:
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{sy(y):.1f}" y2="{sy(y):.1f}" stroke="#e4e4e4"/>'
        )
        parts.append(f'<text x="{left - 5}" y="{sy(y) + 4:.1f}" text-anchor="end">{_tick_label(y)}</text>')
    for x in x_ticks:
        parts.append(
            f'<text x="{sx(x):.1f}" y="{height - bottom + 15}" text-anchor="middle">{_tick_label(x)}</text>'
        )
    parts.append(f'<text x="{(left + width - right) / 2}" y="{height - 5}" text-anchor="middle">step</text>')
    parts.append(
        f'<polyline points="{left},{top} {left},{height - bottom} {width - right},{height - bottom}" '
        'fill="none" stroke="#444"/>'
    )
    for label, y in guides.items():
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{sy(y):.1f}" y2="{sy(y):.1f}" stroke="#777" '
            f'stroke-dasharray="6,4"/><text x="{width - right - 3}" y="{sy(y) - 4:.1f}" text-anchor="end" '
            f'fill="#555">{html.escape(label)}</text>'
        )
    for colour, points in zip(cycle(PALETTE), series.values(), strict=False):
        stride = math.ceil(len(points) / MAX_POINTS)
        drawn = [*points[::stride], *points[-1:]] if stride > 1 else points
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in drawn)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.6"/>')
        if len(points) <= 30:  # few points (checkpoints): mark each one
            parts += [
                f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{colour}"/>' for x, y in points
            ]
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-size="11" '
        f'font-family="sans-serif">{"".join(parts)}{legend}</svg>'
    )


def _legend(names: list[str], width: int) -> tuple[str, int]:
    """SVG legend entries laid out in rows under the title, and the height they take."""
    parts, x, y = [], 10.0, 34
    for colour, name in zip(cycle(PALETTE), names, strict=False):
        span = 24 + 6.5 * len(name)
        if x + span > width and x > 10:
            x, y = 10.0, y + 15
        parts.append(
            f'<line x1="{x}" x2="{x + 16}" y1="{y - 4}" y2="{y - 4}" stroke="{colour}" stroke-width="2"/>'
            f'<text x="{x + 20}" y="{y}">{html.escape(name)}</text>'
        )
        x += span + 8
    return "".join(parts), y - 34 + 15


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Evenly spaced round values (1, 2 or 5 x 10^k apart) covering [low, high]."""
    if high <= low:
        pad = abs(low) * 0.1 or 1.0
        low, high = low - pad, high + pad
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first, last = math.floor(low / step + 1e-9), math.ceil(high / step - 1e-9)
    return [round(k * step, 12) for k in range(first, last + 1)]


def _tick_label(value: float) -> str:
    if value == int(value) and abs(value) >= 10_000 and value % 1000 == 0:
        return f"{int(value) // 1000}k"
    if value == int(value):
        return f"{int(value)}"
    return f"{value:.3g}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"


def _running_mean(points: Sequence[tuple[float, float]], window: int) -> list[tuple[float, float]]:
    """Each finite value averaged with the ``window - 1`` finite values before it."""
    finite = [(x, y) for x, y in points if math.isfinite(y)]
    sums = np.concatenate([[0.0], np.cumsum([y for _, y in finite])])
    return [
        (x, (sums[i + 1] - sums[max(0, i + 1 - window)]) / min(i + 1, window))
        for i, (x, _) in enumerate(finite)
    ]
