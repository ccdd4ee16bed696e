"""Reference predictors scored beside a model: on the model's evaluated pairs, and shown in its report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from components.evaluate import evaluate_images
from components.evaluate.report import render_report
from components.evaluate.stage import restrict_ground_truth, score_references
from components.synthetic import generate
from components.synthetic.baselines import PREDICTORS, all_predictions, predictions


@pytest.fixture(scope="module")
def gold(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    generate(out, images=1, gold_images=12, videos=0, gold_videos=0, size=96, seed=3)
    return out / "gold" / "annotations.json"


def test_every_predictor_is_scored_and_ordered_between_no_recognition_and_the_oracle(
    gold: Path, tmp_path: Path
) -> None:
    scored = score_references([gold], all_predictions(12, 96, 3), tmp_path)
    assert list(scored) == list(PREDICTORS)
    assert scored["oracle"]["cgF1"] == pytest.approx(100.0, abs=0.01)
    assert scored["no recognition"]["cgF1"] == 0.0 and scored["no recognition"]["pmF1"] > 0
    assert 0 < scored["shape only"]["cgF1"] < scored["colour-blind"]["cgF1"] < 100
    # rendering every predictor in one pass gives what each one alone gives
    assert all_predictions(12, 96, 3)["colour-blind"] == predictions(12, 96, 3, ("colour",))


def test_only_the_evaluated_pairs_count(gold: Path, tmp_path: Path) -> None:
    doc = json.loads(gold.read_text())
    first = {im["id"] for im in doc["images"] if im["file_name"] in ("000000.jpg", "000001.jpg")}
    restricted = restrict_ground_truth(gold, first, tmp_path / "gt.json")
    scored = score_references([restricted], all_predictions(12, 96, 3, {"oracle": ()}), tmp_path)
    assert scored["oracle"]["cgF1"] == pytest.approx(100.0, abs=0.01)  # predictions for other images dropped


def test_the_report_puts_the_model_among_the_references(gold: Path, tmp_path: Path) -> None:
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps(predictions(12, 96, 3, ("colour", "texture"))))
    result = evaluate_images([gold], pred, workers=1)
    scored = score_references([gold], all_predictions(12, 96, 3), tmp_path)
    page = render_report(result, {}, [], [], "s3://b/ckpt", examples=0, references=scored)
    assert "The gap to a good model" in page
    rows = page.split("The gap to a good model")[1]
    assert rows.index("oracle") < rows.index("this model") < rows.index("no recognition")
