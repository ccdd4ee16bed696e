"""Synthetic gold and the evaluator agree: a perfect predictor scores 100, a colour-blind one far less."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from components.evaluate import evaluate_images
from components.synthetic import generate
from components.synthetic.baselines import predictions


@pytest.mark.parametrize(("ignore", "low", "high"), [((), 99.99, 100.01), (("colour",), 40.0, 90.0)])
def test_oracle_is_perfect_and_ignoring_colour_costs(
    tmp_path: Path, ignore: tuple[str, ...], low: float, high: float
) -> None:
    out = tmp_path / "synth"
    generate(out, images=1, gold_images=20, videos=0, gold_videos=0, size=96, seed=2)
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps(predictions(20, 96, 2, ignore)))
    result = evaluate_images([out / "gold" / "annotations.json"], pred, workers=1)
    assert low <= result.cgF1 <= high
