"""`sam3-pipeline evaluate` as a user runs it: a whole process, files in, METRICS.json out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.evaluate.saco_cases import CaseOptions, image_case, video_case, write_image_case, write_json

HEADLINE = ["cgF1", "IL_MCC", "pmF1", "cgF1@0.5", "cgF1@0.75", "pmF1@0.5", "pmF1@0.75"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pipeline", "evaluate", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_writes_metrics_and_prints_the_path_last(tmp_path: Path) -> None:
    gts, preds = image_case(np.random.default_rng(3), CaseOptions(pairs=20, files=2))
    gt_paths, pred_path = write_image_case(tmp_path, gts, preds)
    out = tmp_path / "eval" / "metrics.json"
    done = run(
        "--gt", str(gt_paths[0]), "--gt", str(gt_paths[1]), "--pred", str(pred_path), "--out", str(out)
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == str(out)
    metrics = json.loads(out.read_text())
    assert all(isinstance(metrics[k], float) for k in HEADLINE)
    assert metrics["gt_files"] == 2 and len(metrics["per_threshold"]["cgF1"]) == 10
    assert "cgF1" in done.stderr and "IL_MCC" in done.stderr  # the table


def test_video_and_box_iou(tmp_path: Path) -> None:
    gt, preds = video_case(np.random.default_rng(4))
    gt_path, pred_path = write_json(tmp_path / "gt.json", gt), write_json(tmp_path / "pred.json", preds)
    out = tmp_path / "metrics.json"
    done = run(
        "--video", "--iou-type", "bbox", "--gt", str(gt_path), "--pred", str(pred_path), "--out", str(out)
    )
    assert done.returncode == 0, done.stderr
    metrics = json.loads(out.read_text())
    assert (metrics["unit"], metrics["iou_type"]) == ("video", "bbox")


def test_loud_warning_without_negative_pairs(tmp_path: Path) -> None:
    gts, preds = image_case(np.random.default_rng(5), CaseOptions(pairs=6, negative=0.0, not_exhaustive=0.0))
    gt_paths, pred_path = write_image_case(tmp_path, gts, preds)
    done = run("--gt", str(gt_paths[0]), "--pred", str(pred_path), "--out", str(tmp_path / "m.json"))
    assert done.returncode == 0 and "WARNING" in done.stderr and "no negative pairs" in done.stderr


def test_errors_are_one_line_with_an_exit_code(tmp_path: Path) -> None:
    gts, _ = image_case(np.random.default_rng(6), CaseOptions(pairs=4))
    gt_paths, pred_path = write_image_case(tmp_path, gts, [{"image_id": -5, "score": 0.9}])
    done = run("--gt", str(gt_paths[0]), "--pred", str(pred_path), "--out", str(tmp_path / "m.json"))
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.strip().splitlines()[-1].startswith("error: ") and "prediction #0" in done.stderr
    done = run("--gt", str(gt_paths[0]), "--pred", str(pred_path), "--out", "m.json", "--iou-type", "poly")
    assert done.returncode == 2 and "--iou-type" in done.stderr
    done = run("--gt", str(tmp_path / "absent.json"), "--pred", str(pred_path), "--out", "m.json")
    assert done.returncode == 2 and "no such file" in done.stderr
    assert not (tmp_path / "m.json").exists()
