"""The config-driven builder: presets, the released architecture's keys, a tiny model that runs."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from components.errors import ConfigError
from components.model.batch import records_to_batch
from components.model.builder import _parameters_on_meta, bpe_vocab_path, build_model
from components.model.config import PRESETS, ModelConfig
from components.schemas import MediaRecord
from tests.model.conftest import TINY_RESOLUTION


def _signature(model: nn.Module) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    return {k: (tuple(v.shape), v.dtype) for k, v in model.state_dict().items()}


def test_full_model_has_the_released_keys_and_shapes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Same state-dict keys, shapes and dtypes as Meta's builder; nothing allocated, nothing downloaded."""
    ours = build_model("full", device="meta")
    assert all(p.is_meta for p in ours.parameters())

    import sam3.model_builder as official

    class NoVocabulary:  # the official builder reads the BPE file; the key set does not depend on it
        def __init__(self, bpe_path: str) -> None:
            pass

    monkeypatch.setattr(official, "SimpleTokenizer", NoVocabulary)
    monkeypatch.setattr(official, "download_ckpt_from_hf", lambda: pytest.fail("must not download"))
    with _parameters_on_meta():
        released = official.build_sam3_image_model(
            device="cpu", eval_mode=True, checkpoint_path=None, load_from_HF=False
        )
    assert _signature(ours) == _signature(released)
    assert ours.segmentation_head.levels is None  # the released head: masks from every level
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in released.parameters())


def test_presets_share_one_structure() -> None:
    full = build_model("full", device="meta").state_dict().keys()
    for name in ("tiny", "small"):
        keys = build_model(name, device="meta").state_dict().keys()
        # same modules; only depths (indices in the key) differ
        strip = {_without_indices(k) for k in keys}
        assert strip == {_without_indices(k) for k in full}, name


def _without_indices(key: str) -> str:
    return ".".join("#" if part.isdigit() else part for part in key.split("."))


def test_parameter_counts() -> None:
    counts = {name: sum(p.numel() for p in build_model(name, device="meta").parameters()) for name in PRESETS}
    assert counts["tiny"] < 10e6 < counts["small"] < 150e6 < counts["full"]
    assert 830e6 < counts["full"] < 850e6


def test_bad_sizes_are_refused_naming_the_problem() -> None:
    tiny = ModelConfig.preset("tiny")
    with pytest.raises(ValidationError, match="multiple of patch_size"):
        ModelConfig.model_validate({**tiny.model_dump(), "resolution": 230})
    with pytest.raises(ValidationError, match="must include the last block"):
        ModelConfig.model_validate(
            {**tiny.model_dump(), "vision": {**tiny.vision.model_dump(), "global_blocks": [0]}}
        )
    with pytest.raises(ValidationError, match="extra"):
        ModelConfig.model_validate({**tiny.model_dump(), "layers": 3})
    with pytest.raises(ConfigError, match="unknown model size 'huge'"):
        build_model("huge")


def test_vocabulary_is_found_in_installed_packages(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    package = tmp_path / "open_clip"
    package.mkdir()
    (package / "__init__.py").write_text("raise ImportError('located, never imported')\n")
    (package / "bpe_simple_vocab_16e6.txt.gz").write_bytes(b"")
    monkeypatch.delenv("SAM3_BPE_PATH", raising=False)
    monkeypatch.delitem(sys.modules, "open_clip", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert bpe_vocab_path() == package / "bpe_simple_vocab_16e6.txt.gz"
    monkeypatch.setenv("SAM3_BPE_PATH", "/nonexistent/bpe.txt.gz")
    with pytest.raises(ConfigError, match="no such file"):
        bpe_vocab_path()


def test_tiny_model_forward_is_finite(tiny_model: nn.Module, records: list[MediaRecord]) -> None:
    batch = records_to_batch(
        records, resolution=TINY_RESOLUTION, max_queries_per_image=3, exemplar_prob=1.0, rng=random.Random(0)
    )
    tiny_model.eval()
    with torch.no_grad():
        out = tiny_model(batch.data).output[-1][-1]
    q, n = batch.num_queries, ModelConfig.preset("tiny").num_queries
    assert out["pred_logits"].shape == (q, n, 1)
    assert out["pred_boxes"].shape == (q, n, 4)
    assert out["presence_logit_dec"].shape == (q, 1)
    # the tiny presets' mask head reads the neck's two coarser maps: 2x the 16x16 patch grid (released: 4x)
    assert out["pred_masks"].shape == (q, n, 32, 32)
    assert out["semantic_seg"].shape == (q, 1, 32, 32)
    for key in ("pred_logits", "pred_boxes", "presence_logit_dec", "pred_masks"):
        assert torch.isfinite(out[key]).all(), key


def test_decoder_queries_start_on_a_grid_attending_inside_their_boxes() -> None:
    """Fresh reference boxes tile the image (every feature cell lies in a box); each query's image
    cross-attention bias is near 0 inside its box and well below outside it; both are start values only."""
    cfg = ModelConfig.preset("tiny112")
    torch.manual_seed(0)
    decoder = build_model(cfg).transformer.decoder
    boxes = decoder.reference_points.weight.detach().sigmoid()  # (Q, 4) cx, cy, w, h
    side = cfg.feature_size
    centres = (torch.arange(side) + 0.5) / side
    x0, x1 = boxes[:, 0] - boxes[:, 2] / 2, boxes[:, 0] + boxes[:, 2] / 2
    y0, y1 = boxes[:, 1] - boxes[:, 3] / 2, boxes[:, 1] + boxes[:, 3] / 2
    inside_x = (centres[None] > x0[:, None]) & (centres[None] < x1[:, None])  # (Q, side)
    inside_y = (centres[None] > y0[:, None]) & (centres[None] < y1[:, None])
    inside = inside_y[:, :, None] & inside_x[:, None, :]  # (Q, side, side)
    assert (inside.sum(0) >= 1).all()

    with torch.no_grad():
        bias = decoder._get_rpb_matrix(boxes[:, None], (side, side))[0]  # (heads, Q, side*side)
    inside = inside.flatten(1)[None].expand_as(bias)
    assert float(bias[inside].abs().mean()) < 1.0
    assert float(bias[~inside].mean()) < float(bias[inside].mean()) - 3.0

    released = build_model(cfg.model_copy(update={"query_grid": False, "decoder_locality": 0.0}))
    spread = released.transformer.decoder.reference_points.weight.detach().sigmoid()
    assert float(spread[:, 2:].mean()) > 0.3  # random boxes about half the image wide
    assert set(released.state_dict()) == set(build_model(cfg).state_dict())


def test_a_preset_without_checkpointing_recomputes_nothing_and_gets_the_same_gradients(
    records: list[MediaRecord], monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch.utils.checkpoint as checkpoint

    from components.model.loss import build_criterion, forward_and_loss
    from components.model.settings import LossWeights

    calls = []
    original = checkpoint.checkpoint

    def counting(*args: object, **kwargs: object) -> object:
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(checkpoint, "checkpoint", counting)
    batch = records_to_batch(
        records, resolution=TINY_RESOLUTION, max_queries_per_image=3, exemplar_prob=0.0, rng=random.Random(0)
    )
    gradients, recomputed = [], []
    for recompute in (True, False):
        cfg = PRESETS["tiny112"].model_copy(update={"activation_checkpointing": recompute})
        torch.manual_seed(0)
        model = build_model(cfg)
        calls.clear()
        total, _ = forward_and_loss(model, batch, build_criterion(LossWeights()))
        total.backward()
        recomputed.append(len(calls))
        gradients.append({k: p.grad for k, p in model.named_parameters() if p.grad is not None})
    assert recomputed[0] > 0 and recomputed[1] == 0  # the encoder, decoder and mask head too
    assert gradients[0].keys() == gradients[1].keys()
    for key, grad in gradients[0].items():
        torch.testing.assert_close(gradients[1][key], grad, rtol=1e-4, atol=1e-6, msg=key)
