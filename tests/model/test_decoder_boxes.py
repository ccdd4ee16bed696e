"""benchmarks/decoder_boxes.py: boxes followed through the decoder layers of a real (untrained) model."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from components.schemas import MediaRecord
from tests.model.conftest import TINY_RESOLUTION

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "decoder_boxes.py"


def _script() -> Any:
    spec = importlib.util.spec_from_file_location("decoder_boxes", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up
    spec.loader.exec_module(module)
    return module


def test_every_layer_and_every_object_is_counted(tiny_model: nn.Module, records: list[MediaRecord]) -> None:
    script = _script()
    tiny_model.eval()
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    found = script.decoder_boxes(tiny_model, records, TINY_RESOLUTION)
    assert not tiny_model.training  # its mode is restored
    assert all(torch.equal(v, tiny_model.state_dict()[k]) for k, v in before.items())
    objects = sum(len(q.instances) for r in records for q in r.queries if q.positive)
    pairs = sum(1 for r in records for q in r.queries if q.positive and q.instances)
    layers = tiny_model.transformer.decoder.num_layers + 1  # the start boxes, then each layer's
    assert len(found.best) == layers and all(len(b) == objects for b in found.best)
    assert all(len(t) == pairs for t in found.top) and len(found.best_is_top) == objects
    for row in found.means():
        assert 0 <= row["top"] <= row["best"] <= 1  # the top query is one of the queries
