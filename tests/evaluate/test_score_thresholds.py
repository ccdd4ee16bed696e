"""benchmarks/score_thresholds.py on hand-made files: the metrics at each threshold, the localisation table,
and a clear error for a missing file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.evaluate.saco_cases import write_json
from tests.evaluate.test_evaluate_edge_cases import A, B, gt_file, pred

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "score_thresholds.py"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, check=False)


def test_a_low_scoring_true_detection_counts_below_the_protocols_threshold(tmp_path: Path) -> None:
    gt = gt_file(tmp_path / "gt.json", {1: [{"segmentation": A}], 2: []})
    beside = {"bbox": [0.5, 0.5, 0.5, 0.5]}  # a good mask, its box on the next quadrant
    preds = write_json(tmp_path / "p.json", [pred(1, 0.3, A) | beside, pred(2, 0.1, B)])
    done = run(str(gt), str(preds), "--thresholds", "0.3,0.5")
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line.split() for line in done.stdout.splitlines() if line.strip()}
    assert rows["0.30"][2] == "1.000" and rows["0.50"][2] == "0.000"  # IL_MCC: recognised at 0.3 only
    assert rows["all"][1:] == ["1", "0.000", "1.000", "1.000"]  # box IoU 0, the mask's box 1


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    gt = gt_file(tmp_path / "gt.json", {1: [{"segmentation": A}]})
    done = run(str(gt), str(tmp_path / "nowhere.json"))
    assert done.returncode == 2 and "nowhere.json" in done.stderr
