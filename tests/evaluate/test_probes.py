"""Evaluation probes: a random-init detector checkpoint scored with one exemplar box and without the
presence factor, each into its own file, reused, and kept out of the run id."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from components.evaluate import stage as stage_module
from components.evaluate.probes import Probe, evaluate_probes, probe_key
from components.ingest.ingest import Ingest
from components.ingest.sources import SourceSpec
from components.model.builder import build_model
from components.storage import ObjectStore
from components.synthetic import generate
from components.train.checkpoint import CheckpointStore
from pipeline.config import DEFAULT_CONFIG, PipelineConfig

SIZE = "tiny112"


@pytest.fixture
def gold(tmp_path: Path, store: ObjectStore) -> tuple[str, Path]:
    out = tmp_path / "synth"
    generate(out, images=1, gold_images=3, videos=0, gold_videos=0, size=96, seed=3)
    uri = Ingest("pgold", [SourceSpec.parse(f"hq={out / 'gold'}")], store).run().uri
    return uri, out / "gold" / "annotations.json"


def test_probes_score_their_own_files_and_are_reused(
    gold: tuple[str, Path], store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.manual_seed(0)
    ckpt = CheckpointStore(store, "runs/p/presence")
    ckpt.save(1, build_model(SIZE).state_dict(), {"step": 1}, config={"size": SIZE, "stage": "presence"})
    checkpoint = store.uri(ckpt.step_key(1))
    uri, truth = gold
    probes = [Probe(exemplars=1), Probe(presence=False)]
    scored = evaluate_probes(checkpoint, uri, [truth], store, "runs/p/presence/eval", probes)
    assert set(scored) == {"exemplars-1", "no-presence"}
    for probe in probes:
        doc = store.get_json(probe_key("runs/p/presence/eval", probe))
        assert doc["checkpoint"] == checkpoint and doc["probe"] == probe.model_dump()
        assert set(doc["headline"]) >= {"cgF1", "IL_MCC", "pmF1"} and "recognition_auc" in doc["diagnostics"]
    assert not store.exists("runs/p/presence/eval/metrics.json")  # the stage's headline is not touched

    def no_model(*_: Any, **__: Any) -> Any:
        raise AssertionError("a scored probe is reused, not recomputed")

    monkeypatch.setattr(stage_module, "load_checkpoint_model", no_model)
    again = evaluate_probes(checkpoint, uri, [truth], store, "runs/p/presence/eval", probes[:1])
    assert again == {"exemplars-1": scored["exemplars-1"]}


def test_probes_are_configured_and_leave_the_run_id_alone() -> None:
    base = PipelineConfig.load(DEFAULT_CONFIG)
    doc = base.model_dump(mode="json")
    doc["evaluation"] |= {"exemplars": [2, 1, 2], "without_presence": True}
    probed = PipelineConfig.model_validate(doc)
    assert [p.name for p in probed.evaluation.probes()] == ["exemplars-1", "exemplars-2", "no-presence"]
    assert probed.effective_run_id() == base.effective_run_id()  # the checkpoints are shared
    assert probed.content_hash() != base.content_hash()
    assert base.evaluation.probes() == []
