"""Video predictions of the video model and a video stage's evaluation, on ingested synthetic gold videos."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from components.evaluate.result import VideoEvaluation
from components.evaluate.stage import evaluate_video_checkpoint, video_records
from components.evaluate.tracking import (
    Tracked,
    cross_object_ious,
    detect_and_track,
    pair_ids,
    prompted_masklets,
)
from components.evaluate.video import evaluate_videos
from components.ingest.ingest import Ingest
from components.ingest.sources import SourceSpec
from components.model.video import build_video_model
from components.storage import ObjectStore
from components.synthetic import generate
from components.train.checkpoint import CheckpointStore

RES = 112


@pytest.fixture
def gold(tmp_path: Path, store: ObjectStore) -> tuple[str, Path]:
    """(gold dataset URI with 2 videos of 5 frames, their SA-Co video ground truth)."""
    out = tmp_path / "synth"
    generate(out, images=1, gold_images=1, videos=1, gold_videos=2, frames=5, size=96, seed=4)
    uri = Ingest("vgold", [SourceSpec.parse(f"video={out / 'video_gold'}")], store).run().uri
    return uri, out / "video_gold" / "annotations.json"


def _decode(rle: dict | None, shape: tuple[int, int]) -> np.ndarray:  # type: ignore[type-arg]
    if rle is None:
        return np.zeros(shape, bool)
    return mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)


def test_copy_last_mask_repeats_the_true_first_visible_mask(
    gold: tuple[str, Path], store: ObjectStore
) -> None:
    uri, truth = gold
    records = video_records(uri, store)
    copied = prompted_masklets(None, records, RES, copy_last=True)
    results, ious = copied.results, copied.ious
    positives = {pair_ids(q) for r in records for q in r.queries if q.positive}
    assert {(p["video_id"], p["category_id"]) for p in results} == positives
    assert len(ious) == len(results) and all(0 <= v <= 1 for v in ious) and max(ious) > 0
    for r in records:
        for q in (q for q in r.queries if q.positive):
            for instance in q.instances:
                first = next(t for t, c in enumerate(instance.masks) if c is not None)
                (mine,) = [  # one masklet per object of the pair, in instance order
                    p
                    for k, p in enumerate(
                        x for x in results if (x["video_id"], x["category_id"]) == pair_ids(q)
                    )
                    if k == q.instances.index(instance)
                ]
                frames = [_decode(m, (r.height, r.width)) for m in mine["segmentations"]]
                assert not any(f.any() for f in frames[:first])
                expected = _decode({"size": [r.height, r.width], "counts": instance.masks[first]}, (96, 96))
                assert all(np.array_equal(f, expected) for f in frames[first:])
    (tmp := truth.parent / "copy.json").write_text(json.dumps(results))
    scored = evaluate_videos(truth, tmp)
    assert pytest.approx(1.0) == scored.IL_MCC  # recognition is given: every positive pair, no negative one
    assert copied.cross_ious and copied.cross_object_iou < 0.2  # the true masks of different objects differ


def test_cross_object_iou_tells_a_tracker_that_follows_its_prompt_from_one_that_segments_everything() -> None:
    frames, size = 4, 8
    truth = {}
    for k, x in enumerate((0, 4)):  # two objects side by side, visible from frame 0 (their prompt)
        m = np.zeros((frames, size, size), bool)
        m[:, 2:4, x : x + 2] = True
        truth[(f"o{k}",)] = m
    follows = Tracked(masks=truth, truth=truth)
    assert cross_object_ious(follows) == [0.0] * (frames - 1)  # frames after the prompt only
    union = truth[("o0",)] | truth[("o1",)]
    segments_all = Tracked(masks={k: union.copy() for k in truth}, truth=truth)
    assert cross_object_ious(segments_all) == [1.0] * (frames - 1)
    late = dict(truth)
    late[("o1",)] = truth[("o1",)].copy()
    late[("o1",)][:2] = False  # first visible on frame 2: pairs count only after both prompts
    assert len(cross_object_ious(Tracked(masks=late, truth=late))) == 1


def test_detect_and_track_gives_masklets_the_evaluator_reads(
    gold: tuple[str, Path], store: ObjectStore
) -> None:
    uri, truth = gold
    torch.manual_seed(0)
    model = build_video_model("tiny112")
    records = video_records(uri, store)
    # an untrained detector scores far below 0.5: take every detection to exercise tracking from it
    results = detect_and_track(model, records, RES, score_threshold=0.0, max_objects=2)
    assert model.training  # restored
    frames = {pair_ids(q)[0]: len(r.frames) for r in records for q in r.queries}
    assert results and all(len(p["segmentations"]) == frames[p["video_id"]] for p in results)
    per_pair: dict[tuple[int, int], int] = {}
    for p in results:
        key = (p["video_id"], p["category_id"])
        per_pair[key] = per_pair.get(key, 0) + 1
    assert max(per_pair.values()) <= 2
    (tmp := truth.parent / "detected.json").write_text(json.dumps(results))
    assert 0 <= evaluate_videos(truth, tmp).cgF1 <= 100


def test_a_video_stage_evaluation_scores_the_tracker_beside_copy_last_mask(
    gold: tuple[str, Path], store: ObjectStore
) -> None:
    uri, truth = gold
    torch.manual_seed(0)
    model = build_video_model("tiny112")
    ckpt = CheckpointStore(store, "runs/t/tracker")
    pointer = ckpt.save(1, model.state_dict(), {"step": 1}, config={"size": "tiny112", "stage": "tracker"})
    evaluation = evaluate_video_checkpoint(pointer.weights, uri, truth, store)
    doc = evaluation.to_json_dict()
    assert VideoEvaluation.model_validate(doc) == evaluation  # what metrics.json holds reads back the same
    assert set(doc["headline"]) == {
        "video_cgF1",
        "video_IL_MCC",
        "video_pmF1",
        "tracking_cgF1",
        "masklet_IoU",
        "cross_object_IoU",
    }
    assert 0 <= doc["headline"]["masklet_IoU"] <= 1 and doc["videos"] == 2
    assert 0 <= doc["headline"]["cross_object_IoU"] <= 1
    copied = prompted_masklets(None, video_records(uri, store), RES, copy_last=True)
    reference = doc["references"]["copy last mask"]
    assert reference["masklet_IoU"] == pytest.approx(sum(copied.ious) / len(copied.ious))
    assert reference["cross_object_IoU"] == pytest.approx(copied.cross_object_iou)
    assert doc["tracked_objects"] == len(copied.ious)


def test_predict_videos_then_evaluate_from_the_command_line(
    gold: tuple[str, Path], store: ObjectStore, s3_env: dict[str, str], tmp_path: Path
) -> None:
    uri, truth = gold
    torch.manual_seed(0)
    pointer = CheckpointStore(store, "runs/cli/joint").save(
        1,
        build_video_model("tiny112").state_dict(),
        {"step": 1},
        config={"size": "tiny112", "stage": "joint"},
    )
    out = tmp_path / "masklets.json"
    cli = [sys.executable, "-m", "pipeline"]
    done = subprocess.run(
        [*cli, "predict", "--videos", "--checkpoint", pointer.weights, "--dataset", uri, "--out", str(out),
         "--score-threshold", "0.0"],
        capture_output=True, text=True, env=s3_env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == str(out)
    masklets = json.loads(out.read_text())
    assert masklets and {"video_id", "category_id", "score", "segmentations"} <= set(masklets[0])
    metrics = tmp_path / "m.json"
    scored = subprocess.run(
        [*cli, "evaluate", "--video", "--gt", str(truth), "--pred", str(out), "--out", str(metrics)],
        capture_output=True, text=True, env=s3_env, timeout=120,
    )  # fmt: skip
    assert scored.returncode == 0, scored.stderr[-3000:]
