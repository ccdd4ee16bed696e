"""predict_records: SA-Co results entries from the tiny model."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from torch import nn

from components.errors import DataError
from components.model.config import ModelConfig
from components.model.predict import predict_records
from components.schemas import MediaRecord
from tests.model.conftest import TINY_RESOLUTION


def test_one_entry_per_detection_in_the_results_format(
    tiny_model: nn.Module, records: list[MediaRecord]
) -> None:
    tiny_model.train()
    results = predict_records(tiny_model, records, resolution=TINY_RESOLUTION)
    assert tiny_model.training  # mode restored
    queries = [q for r in records for q in r.queries]
    assert len(results) == len(queries) * ModelConfig.preset("tiny").num_queries  # threshold 0 keeps all
    assert {r["image_id"] for r in results} == {int(q.origin_id) for q in queries}
    for entry in results:
        assert set(entry) == {"image_id", "score", "bbox", "segmentation"}
        assert isinstance(entry["image_id"], int) and 0.0 <= entry["score"] <= 1.0
        x, y, w, h = entry["bbox"]
        assert 0 <= x <= 1 and 0 <= y <= 1 and w >= 0 and h >= 0 and x + w <= 1 + 1e-6 and y + h <= 1 + 1e-6
        segmentation = entry["segmentation"]
        assert segmentation["size"] == [96, 96] and isinstance(segmentation["counts"], str)
    mask = mask_utils.decode(
        {**results[0]["segmentation"], "counts": results[0]["segmentation"]["counts"].encode()}
    )
    assert mask.shape == (96, 96) and mask.dtype == np.uint8


def test_threshold_and_videos(tiny_model: nn.Module, records: list[MediaRecord]) -> None:
    everything = predict_records(tiny_model, records, resolution=TINY_RESOLUTION)
    threshold = float(np.median([r["score"] for r in everything]))
    kept = predict_records(tiny_model, records, resolution=TINY_RESOLUTION, score_threshold=threshold)
    assert 0 < len(kept) < len(everything) and all(r["score"] >= threshold for r in kept)
    video = copy.deepcopy(records[0])
    video.kind = "video"
    assert predict_records(tiny_model, [video], resolution=TINY_RESOLUTION) == []


def test_pairs_need_integer_ids(tiny_model: nn.Module, records: list[MediaRecord]) -> None:
    record = copy.deepcopy(records[0])
    record.queries[0].origin_id = "pair-seven"
    with pytest.raises(DataError, match="pair-seven"):
        predict_records(tiny_model, [record], resolution=TINY_RESOLUTION)


def test_without_presence_scores_are_the_query_probabilities(
    tiny_model: nn.Module, records: list[MediaRecord]
) -> None:
    """The presence head off at evaluation (SAM 3's ablation): a score no longer carries the presence factor,
    so it is at least as high as with it, detection by detection."""
    with_presence = predict_records(tiny_model, records[:1], resolution=TINY_RESOLUTION)
    without = predict_records(tiny_model, records[:1], resolution=TINY_RESOLUTION, presence=False)
    assert [r["bbox"] for r in with_presence] == [r["bbox"] for r in without]
    assert all(b["score"] >= a["score"] for a, b in zip(with_presence, without, strict=True))
    assert any(b["score"] > a["score"] for a, b in zip(with_presence, without, strict=True))


def test_exemplars_change_the_positive_pairs_predictions_only(
    tiny_model: nn.Module, records: list[MediaRecord]
) -> None:
    """k = 1 ground-truth box with the phrase: the positive pairs' detections change (the prompt now holds a
    box), the negative pairs' stay as with text alone (they have no instance to give)."""
    record = records[0]
    positives = {int(q.origin_id) for q in record.queries if q.positive}
    assert positives and len(positives) < len(record.queries)
    text = predict_records(tiny_model, [record], resolution=TINY_RESOLUTION)
    boxed = predict_records(tiny_model, [record], resolution=TINY_RESOLUTION, exemplars=1)
    assert [a["image_id"] for a in text] == [b["image_id"] for b in boxed]
    changed = {
        a["image_id"] for a, b in zip(text, boxed, strict=True) if a["score"] != pytest.approx(b["score"])
    }
    assert changed == positives
