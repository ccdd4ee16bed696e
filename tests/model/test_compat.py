"""Each CPU-compatibility patch: it fixes the CPU path and leaves the CUDA path to the original code."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Any

import numpy as np
import pytest
import torch
from scipy.ndimage import distance_transform_edt

from components.model import compat
from components.model.builder import _geometry_encoder
from components.model.compat import ensure_compat
from components.model.config import ModelConfig

ensure_compat()

from sam3.model import edt, sam3_tracker_utils  # noqa: E402
from sam3.model.decoder import TransformerDecoder  # noqa: E402
from sam3.model.geometry_encoders import SequenceGeometryEncoder  # noqa: E402
from sam3.model.position_encoding import PositionEmbeddingSine  # noqa: E402
from sam3.model.text_encoder_ve import TextTransformer  # noqa: E402
from sam3.train.loss import loss_fns  # noqa: E402
from sam3.train.loss.sam3_loss import Sam3LossWrapper  # noqa: E402

HAS_CUDA = torch.cuda.is_available()


def _patched_objects() -> list[object]:
    return [
        PositionEmbeddingSine.__init__,
        TransformerDecoder.__dict__["_get_coords"].__func__,
        SequenceGeometryEncoder._encode_boxes,
        loss_fns.sigmoid_focal_loss,
        edt.edt_triton,
        sam3_tracker_utils.edt_triton,
        TextTransformer.__init__,
        Sam3LossWrapper._get_num_boxes,
    ]


def test_every_patch_is_applied_once() -> None:
    before = _patched_objects()
    compat._applied = False
    ensure_compat()  # a second application must not wrap the wrappers
    after = _patched_objects()
    assert all(a is b for a, b in zip(before, after, strict=True))
    assert all(getattr(p, compat._MARK, False) for p in after)
    assert isinstance(TransformerDecoder.__dict__["_get_coords"], staticmethod)


@pytest.mark.skipif(HAS_CUDA, reason="checks the fallback taken without CUDA")
def test_position_encoding_precomputes_on_the_default_device() -> None:
    pe = PositionEmbeddingSine(num_pos_feats=32, precompute_resolution=64)
    assert set(pe.cache) == {(16, 16), (8, 8), (4, 4), (2, 2)}
    cached = pe.cache[(8, 8)]
    assert cached.device.type == "cpu"
    fresh = PositionEmbeddingSine(num_pos_feats=32)(torch.zeros(1, 1, 8, 8))
    torch.testing.assert_close(cached, fresh[0])


def test_position_encoding_keeps_cuda_where_cuda_works(monkeypatch: pytest.MonkeyPatch) -> None:
    if HAS_CUDA:
        assert PositionEmbeddingSine(32, precompute_resolution=64).cache[(8, 8)].is_cuda
        return
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises((RuntimeError, AssertionError)):  # the original asks this machine for CUDA
        PositionEmbeddingSine(32, precompute_resolution=64)


def test_decoder_coordinates_leave_cuda_only_without_it(monkeypatch: pytest.MonkeyPatch) -> None:
    coords_h, _ = TransformerDecoder._get_coords(4, 2, "cpu")
    torch.testing.assert_close(coords_h, torch.tensor([0.0, 0.25, 0.5, 0.75]))
    if HAS_CUDA:
        assert TransformerDecoder._get_coords(4, 2, "cuda")[0].is_cuda
        return
    assert TransformerDecoder._get_coords(4, 2, "cuda")[0].device.type == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises((RuntimeError, AssertionError)):
        TransformerDecoder._get_coords(4, 2, "cuda")


def test_box_prompts_encode_without_pinned_memory() -> None:
    encoder: Any = _geometry_encoder(ModelConfig.preset("tiny")).eval()
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.4]], [[0.3, 0.6, 0.1, 0.1]]])  # (n_boxes=2, bs=1, 4) cxcywh
    feats = torch.randn(1, 64, 16, 16)
    args = (boxes, torch.zeros(1, 2, dtype=torch.bool), torch.ones(2, 1).long(), feats)
    embed, _ = encoder._encode_boxes(*args)
    assert embed.shape == (2, 1, 64) and torch.isfinite(embed).all()
    if not HAS_CUDA:
        with pytest.raises(RuntimeError):  # what the patch prevents
            SequenceGeometryEncoder._encode_boxes.__wrapped__(encoder, *args)


def _focal_reference(inputs: torch.Tensor, targets: torch.Tensor, alpha: float, gamma: float) -> torch.Tensor:
    p = inputs.sigmoid()
    ce = torch.nn.functional.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    return (alpha * targets + (1 - alpha) * (1 - targets)) * ce * (1 - p_t) ** gamma


def test_focal_loss_takes_the_pytorch_branch_on_cpu() -> None:
    inputs = torch.randn(3, 50, requires_grad=True)
    targets = (torch.rand(3, 50) > 0.7).float()
    reference = _focal_reference(inputs, targets, 0.25, 2.0)
    elementwise = loss_fns.sigmoid_focal_loss(inputs, targets, 1, alpha=0.25, gamma=2, reduce=False)
    torch.testing.assert_close(elementwise, reference)
    reduced = loss_fns.sigmoid_focal_loss(inputs, targets, 4.0, 0.25, 2)  # positional alpha/gamma too
    torch.testing.assert_close(reduced, reference.mean(1).sum() / 4.0)
    reduced.backward()
    assert inputs.grad is not None and torch.isfinite(inputs.grad).all()
    if not HAS_CUDA:
        with pytest.raises(RuntimeError):  # the Triton kernel the patch avoids
            loss_fns.sigmoid_focal_loss.__wrapped__(inputs.detach(), targets, 1.0)


def test_distance_transform_falls_back_to_scipy() -> None:
    masks = torch.ones(3, 7, 9, dtype=torch.bool)
    masks[0, 3, 4] = False
    masks[1, :, 0] = False  # masks[2] has no zero pixel
    for edt_fn in (edt.edt_triton, sam3_tracker_utils.edt_triton):
        out = edt_fn(masks)
        assert out.dtype == torch.float32 and out.shape == masks.shape
        yy, xx = np.mgrid[0:7, 0:9]
        np.testing.assert_allclose(out[0].numpy(), np.hypot(yy - 3, xx - 4), rtol=1e-6)
        np.testing.assert_allclose(out[1].numpy(), distance_transform_edt(masks[1].numpy()), rtol=1e-6)
        assert (out[2] == compat.NO_ZERO_DISTANCE).all()  # as the Triton kernel


def test_text_encoder_parameters_are_initialised() -> None:
    torch.manual_seed(0)
    text = TextTransformer(context_length=16, vocab_size=100, width=64, heads=2, layers=1, output_tokens=True)
    assert torch.isfinite(text.positional_embedding).all()
    assert 0.005 < text.positional_embedding.std() < 0.02
    assert torch.isfinite(text.text_projection).all()
    assert 0.06 < text.text_projection.std() < 0.19  # width ** -0.5 = 0.125
    pooled, tokens = text(torch.randint(1, 100, (2, 16)))
    assert torch.isfinite(pooled).all() and torch.isfinite(tokens).all()


@pytest.mark.skipif(torch.distributed.is_initialized(), reason="needs no process group")
def test_global_loss_normalisation_works_without_a_process_group() -> None:
    wrapper = Sam3LossWrapper(loss_fns_find=[], normalization="global")
    num_boxes = wrapper._get_num_boxes({"num_boxes": torch.tensor([2, 0, 3])})
    assert float(num_boxes) == 5.0
    assert wrapper.normalization == "global"
    empty = wrapper._get_num_boxes({"num_boxes": torch.tensor([0, 0])})
    assert float(empty) == 1.0  # clamped, as the official code does


@pytest.mark.slow
def test_sam3_imports_and_trains_without_triton(tmp_path: object) -> None:
    """Where Triton is not installed (e.g. CPU-only wheels), stand-ins make the package importable."""
    script = textwrap.dedent(
        """
        import sys
        sys.modules["triton"] = None  # import triton now fails, as where it is not installed
        from components.model.compat import ensure_compat
        ensure_compat()
        import torch
        from sam3.train.loss import loss_fns
        from sam3.model import edt
        x = torch.randn(2, 8)
        print(float(loss_fns.sigmoid_focal_loss(x, (x > 0).float(), 1.0)))
        print(float(edt.edt_triton(torch.zeros(1, 3, 3, dtype=torch.bool)).sum()))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    focal, distances = done.stdout.split()
    assert float(focal) > 0 and float(distances) == 0.0
