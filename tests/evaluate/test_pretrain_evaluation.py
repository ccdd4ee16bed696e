"""The pretrain stage's evaluation: a random-init alignment checkpoint scored for recognition on gold
images, reused, refused when its weights do not fit, and logged by the evaluate step."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from components.errors import DataError
from components.evaluate import stage as stage_module
from components.evaluate.component import evaluate_stage
from components.evaluate.stage import evaluate_alignment_checkpoint
from components.gate.policy import stage_metrics
from components.ingest.ingest import Ingest
from components.ingest.sources import SourceSpec
from components.model.align import build_alignment_model
from components.storage import ObjectStore
from components.synthetic import generate
from components.train.checkpoint import CheckpointStore
from components.train.history import TrainingHistory

SIZE = "tiny112"


@pytest.fixture
def gold(tmp_path: Path, store: ObjectStore) -> str:
    out = tmp_path / "synth"
    generate(out, images=1, gold_images=6, videos=0, gold_videos=0, size=96, seed=3)
    return Ingest("agold", [SourceSpec.parse(f"hq={out / 'gold'}")], store).run().uri


def save_alignment_checkpoint(store: ObjectStore, run_id: str, keep: str = "") -> str:
    """A random-init alignment model saved as the pretrain stage's step 1 (the keys starting ``keep``)."""
    torch.manual_seed(0)
    weights = {k: v for k, v in build_alignment_model(SIZE).state_dict().items() if k.startswith(keep)}
    ckpt = CheckpointStore(store, f"runs/{run_id}/pretrain")
    ckpt.save(1, weights, {"step": 1}, config={"size": SIZE, "stage": "pretrain"})
    return store.uri(ckpt.step_key(1))


def test_a_pretrain_checkpoint_is_scored_for_recognition_and_reused(
    gold: str, store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoint = save_alignment_checkpoint(store, "t")
    history = TrainingHistory("pretrain")
    history.add_step(1, {"align_loss": 0.69}, {"vision": 0.002}, 0.1)
    evaluation = evaluate_alignment_checkpoint(
        checkpoint, gold, store, "runs/t/pretrain/eval", history=history.to_json()
    )
    doc = store.get_json("runs/t/pretrain/eval/metrics.json")
    assert set(doc) == {"checkpoint", "gold", "recognition"} and doc["checkpoint"] == checkpoint
    recognition = doc["recognition"]
    assert 0.2 <= recognition["recognition_AUC"] <= 0.8  # random weights: about chance
    assert recognition["pairs"] > recognition["positive_pairs"] > 0 and recognition["by_length"]
    assert evaluation.result is None and evaluation.recognition == recognition
    assert evaluation.headline() == {"recognition_AUC": recognition["recognition_AUC"]}
    assert stage_metrics(doc) == evaluation.headline()  # what the gate, the summary and the card read
    assert evaluation.metrics_uri == store.uri("runs/t/pretrain/eval/metrics.json")
    assert store.exists("runs/t/pretrain/eval/report.html") and "<html" in evaluation.report_html.lower()

    def no_model(*_: Any, **__: Any) -> Any:
        raise AssertionError("a finished evaluation is reused, not recomputed")

    monkeypatch.setattr(stage_module, "load_alignment_model", no_model)
    again = evaluate_alignment_checkpoint(checkpoint, gold, store, "runs/t/pretrain/eval")
    assert again.recognition == recognition and again.metrics_uri == evaluation.metrics_uri


def test_weights_that_do_not_fit_the_alignment_model_fail_loudly(gold: str, store: ObjectStore) -> None:
    backbone_only = save_alignment_checkpoint(store, "b", keep="backbone.")
    with pytest.raises(DataError, match=r"does not fit this model: \d+ missing keys \(align\."):
        evaluate_alignment_checkpoint(backbone_only, gold, store, "runs/b/pretrain/eval")
    assert not store.exists("runs/b/pretrain/eval/metrics.json")


class Logged:
    """The KFP Metrics output as the component sees it."""

    def __init__(self) -> None:
        self.values: dict[str, float] = {}

    def log_metric(self, name: str, value: float) -> None:
        self.values[name] = value


def test_the_evaluate_step_logs_the_pretrain_recognition(
    gold: str, store: ObjectStore, s3_env: dict[str, str], tmp_path: Path
) -> None:
    checkpoint = save_alignment_checkpoint(store, "k")
    metrics, report = Logged(), SimpleNamespace(path=str(tmp_path / "report.html"))
    uri = evaluate_stage.python_func(
        stage="pretrain",
        run_id="k",
        checkpoint=checkpoint,
        gold=gold,
        data="{}",  # the pretrain stage reads only the gold dataset
        max_images=0,
        examples=4,
        size="",  # the checkpoint's config.json
        base_metrics="",  # a run without a base
        metrics=metrics,
        report=report,
    )
    assert uri == store.uri("runs/k/pretrain/eval/metrics.json")
    recognition = store.get_json("runs/k/pretrain/eval/metrics.json")["recognition"]
    expected = {"pretrain/recognition_AUC": recognition["recognition_AUC"]} | {
        f"pretrain/recognition_AUC_{n}_words": auc for n, auc in recognition["by_length"].items()
    }
    assert metrics.values == expected
    assert Path(report.path).read_text() == store.get_bytes("runs/k/pretrain/eval/report.html").decode()
