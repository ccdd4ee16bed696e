"""The run summary of `sam3-pipeline run`, from the records a run leaves in a real store."""

from __future__ import annotations

import io
import json
import re

import pytest
from rich.console import Console

from components.gate.policy import GateDecision
from components.report.outcome import collect, gate_key
from components.schemas import evaluation_metrics_key, stage_result_key
from components.storage import ObjectStore
from components.train.job import StageResult
from pipeline.commands import run as run_command

IMAGE = {"cgF1": 12.5, "IL_MCC": 0.25, "pmF1": 50.0, "cgF1@0.5": 20.0, "cgF1@0.75": 5.0}
RECOGNITION = {
    "recognition_AUC": 0.6125,
    "by_length": {"1": 0.55, "2": 0.7},
    "pairs": 40,
    "positive_pairs": 12,
}


def record_stage(store: ObjectStore, run_id: str, stage: str, doc: dict, steps: int) -> None:  # type: ignore[type-arg]
    checkpoint = store.uri(f"runs/{run_id}/{stage}/checkpoints/step-{steps:07d}")
    result = StageResult(
        stage=stage, run_id=run_id, checkpoint=checkpoint, steps=steps, seconds=42.0, handle=None
    )
    store.put_json(stage_result_key(run_id, stage), result)
    store.put_json(
        evaluation_metrics_key(run_id, stage), {"checkpoint": checkpoint, "gold": "s3://b/g", **doc}
    )
    decision = GateDecision(stage=stage, passed=True, reasons=["ok"], metrics={})
    store.put_json(gate_key(run_id, "e", stage), decision)


def summary(store: ObjectStore, run_id: str, stages: list[str], monkeypatch: pytest.MonkeyPatch) -> str:
    out = io.StringIO()
    monkeypatch.setattr(run_command, "stderr", Console(file=out, width=200))
    outcome = collect(store, run_id, "e", stages, "SUCCEEDED")
    run_command.print_summary(outcome)
    return out.getvalue()


def test_the_pretrain_row_shows_its_recognition_auc(
    store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    record_stage(store, "r", "pretrain", {"recognition": RECOGNITION}, 400)
    record_stage(store, "r", "detector", {"result": IMAGE}, 660)
    text = summary(store, "r", ["pretrain", "detector", "presence"], monkeypatch)
    header = re.search(
        r"┃ stage\s+┃ steps ┃ time s ┃ recognition AUC ┃\s+cgF1 ┃ IL_MCC ┃\s+pmF1 ┃ gate\s+┃", text
    )
    assert header, text
    assert re.search(r"│ pretrain │\s+400 │\s+42 │\s+0\.613 │\s+- │\s+- │\s+- │ passed\s+│", text), text
    assert re.search(
        r"│ detector │\s+660 │\s+42 │\s+- │\s+12\.50 │\s+0\.250 │\s+50\.00 │ passed\s+│", text
    ), text
    assert re.search(r"│ presence │\s+- │\s+- │\s+- │\s+- │\s+- │\s+- │ not run\s+│", text), text
    assert "pretrain recognition AUC by phrase length (0.5 = chance): 1 word 0.550, 2 words 0.700" in text
    brief = collect(store, "r", "e", ["pretrain", "detector"], "SUCCEEDED").brief()
    assert brief.startswith(
        "pretrain recognition_AUC 0.613, gate passed; detector cgF1 12.5 IL_MCC 0.25 pmF1 50"
    )


def test_without_pretrain_the_table_is_as_before(store: ObjectStore, monkeypatch: pytest.MonkeyPatch) -> None:
    record_stage(store, "s", "detector", {"result": IMAGE}, 660)
    text = summary(store, "s", ["detector", "presence"], monkeypatch)
    assert re.search(r"┃ stage\s+┃ steps ┃ time s ┃\s+cgF1 ┃ IL_MCC ┃\s+pmF1 ┃ gate\s+┃", text), text
    assert re.search(r"│ detector │\s+660 │\s+42 │\s+12\.50 │\s+0\.250 │\s+50\.00 │ passed\s+│", text), text
    assert "recognition AUC" not in text


def test_the_base_row_and_each_stages_cgf1_against_it(
    store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from components.promote.base import ResolvedBase, base_key

    weights = store.uri("registry/m/versions/1/model.safetensors")
    found = ResolvedBase(reference="m@production (version 1)", weights=weights, model="m", version=1)
    store.put_json(base_key("r", "e"), found)
    store.put_json(
        evaluation_metrics_key("r", "base"),
        {"checkpoint": weights, "gold": "s3://b/g", "result": {**IMAGE, "cgF1": 10.0}},
    )
    record_stage(store, "r", "detector", {"result": IMAGE}, 100)
    text = summary(store, "r", ["detector", "presence"], monkeypatch)
    assert re.search(
        r"┃ stage\s+┃ steps ┃ time s ┃\s+cgF1 ┃ IL_MCC ┃\s+pmF1 ┃ cgF1 vs base ┃ gate\s+┃", text
    ), text
    assert re.search(r"│ base\s+│\s+- │\s+- │\s+10\.00 │\s+0\.250 │\s+50\.00 │\s+│\s+│", text), text
    assert re.search(
        r"│ detector │\s+100 │\s+42 │\s+12\.50 │\s+0\.250 │\s+50\.00 │\s+\+2\.50 │ passed\s+│", text
    ), text
    assert re.search(r"│ presence │\s+- │\s+- │\s+- │\s+- │\s+- │\s+- │ not run\s+│", text), text
    assert f"base: m@production (version 1) = m version 1 ({weights})" in text
    outcome = collect(store, "r", "e", ["detector"], "SUCCEEDED")
    assert outcome.brief().startswith(
        "base m@production (version 1) cgF1 10 IL_MCC 0.25 pmF1 50; detector cgF1 12.5"
    )


VIDEO_HEADLINE = {
    "video_cgF1": 8.25,
    "video_IL_MCC": 0.125,
    "video_pmF1": 40.0,
    "tracking_cgF1": 30.5,
    "masklet_IoU": 0.625,
    "cross_object_IoU": 0.75,
}


def test_a_video_stage_shows_its_gold_videos_and_the_tracker_reference(
    store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The video section of metrics.json, typed, in the summary; the outcome's JSON keeps its form (a
    reference measured before cross-object IoU existed has no such key, not a null)."""
    copied = {"tracking_cgF1": 20.0, "masklet_IoU": 0.5}
    video = {
        "result": {"cgF1": 8.25},  # the summary reads the headline and the references only
        "headline": VIDEO_HEADLINE,
        "references": {"copy last mask": copied},
        "videos": 2,
        "tracked_objects": 5,
    }
    record_stage(store, "v", "tracker", {"result": IMAGE, "video": video}, 100)
    text = summary(store, "v", ["tracker"], monkeypatch)
    assert re.search(r"│ tracker │\s+8\.25 │\s+0\.125 │\s+40\.00 │\s+30\.50 │\s+0\.625 │\s+0\.750 │", text), (
        text
    )
    assert (
        "tracker tracking, prompted with the true first-visible masks: tracker masklet IoU 0.625, "
        "tracking cgF1 30.50, cross-object IoU 0.750; copy last mask: masklet IoU 0.500, tracking cgF1 20.00"
    ) in text
    assert "tracker: the tracker gives different objects of a video nearly the same mask" in text
    outcome = collect(store, "v", "e", ["tracker"], "SUCCEEDED")
    assert json.loads(outcome.model_dump_json())["stages"][0]["video_references"] == {
        "copy last mask": copied
    }
