"""Checkpoint keys: the layouts checkpoints come in, and loud refusal of one that does not fit."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from components.errors import ConfigError, DataError
from components.model.builder import build_model
from components.model.checkpoint import load_weights, normalize_state_dict


def test_wrappers_are_stripped() -> None:
    w = torch.zeros(1)
    assert normalize_state_dict({"module.a.weight": w, "module._orig_mod.b": w}) == {"a.weight": w, "b": w}
    assert normalize_state_dict({"model": {"module.a": w}}) == {"a": w}


def test_released_layout_keeps_the_detector() -> None:
    w, t = torch.zeros(1), torch.ones(1)
    released = {"detector.backbone.x": w, "detector.transformer.y": w, "tracker.maskmem.z": t}
    assert normalize_state_dict({"model": released}) == {"backbone.x": w, "transformer.y": w}
    assert normalize_state_dict({f"module.{k}": v for k, v in released.items()}).keys() == {
        "backbone.x",
        "transformer.y",
    }


def test_own_checkpoint_loads_in_any_layout(tiny_model: nn.Module) -> None:
    saved = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    target = build_model("tiny112")
    load_weights(target, {f"module.{k}": v for k, v in saved.items()}, "ddp.safetensors")
    load_weights(target, {f"detector.{k}": v for k, v in saved.items()}, "released.pt")
    for key, value in target.state_dict().items():
        torch.testing.assert_close(value, saved[key], msg=key)


def test_a_checkpoint_missing_a_key_is_refused(tiny_model: nn.Module) -> None:
    state = dict(tiny_model.state_dict())
    del state["transformer.decoder.presence_token.weight"]
    with pytest.raises(DataError) as refused:
        load_weights(tiny_model, state, "s3://sam3/runs/r1/detector/checkpoints/step-0000100")
    message = str(refused.value)
    assert message.startswith("s3://sam3/runs/r1/detector/checkpoints/step-0000100 does not fit this model")
    assert "1 missing keys (transformer.decoder.presence_token.weight)" in message
    assert "unexpected" not in message


def test_unexpected_keys_and_shapes_are_listed_and_counted(tiny_model: nn.Module) -> None:
    state = dict(tiny_model.state_dict())
    extra = {f"extra.{i}": torch.zeros(1) for i in range(7)}
    state["transformer.decoder.query_embed.weight"] = torch.zeros(3, 3)
    with pytest.raises(DataError) as refused:
        load_weights(tiny_model, {**state, **extra}, "other.pt")
    message = str(refused.value)
    assert "7 unexpected keys (extra.0, extra.1, extra.2, extra.3, extra.4, ... 2 more)" in message
    assert (
        "1 shape mismatches (transformer.decoder.query_embed.weight: checkpoint (3, 3) vs model (36, 64))"
        in message
    )


def test_weights_round_trip_through_safetensors(tiny_model: nn.Module, tmp_path: Path) -> None:
    """The trainer stores weights as safetensors: no shared storage, complex RoPE tables included."""
    path = tmp_path / "model.safetensors"
    save_file(tiny_model.state_dict(), path)
    load_weights(tiny_model, load_file(path), str(path))


def test_rope_tables_are_the_models_own(tiny_model: nn.Module) -> None:
    state = {k: v for k, v in tiny_model.state_dict().items() if not k.endswith("freqs_cis")}
    assert len(state) < len(tiny_model.state_dict())
    load_weights(tiny_model, state, "without-rope.pt")  # recomputable buffers may be absent


def test_meta_models_cannot_take_weights(tiny_model: nn.Module) -> None:
    with pytest.raises(ConfigError, match="meta device"):
        load_weights(build_model("tiny", device="meta"), tiny_model.state_dict(), "x.pt")
