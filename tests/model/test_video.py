"""The video model: the released tracker's structure, clips and prompts, a tracker that learns, weights."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

from components.errors import DataError
from components.model.builder import _parameters_on_meta, build_model
from components.model.checkpoint import load_weights
from components.model.clips import TRACK_TERMS, TrackerCriterion, object_masks, records_to_clips, sample_clip
from components.model.config import ModelConfig
from components.model.loss import Criteria, forward_and_loss
from components.model.settings import ClipSampling, TrackerLossWeights
from components.model.video import build_tracker, build_video_model, load_video_weights
from tests.model.records import synthetic_video_record

RES = 112


def _signature(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def test_full_tracker_has_the_released_keys_and_shapes() -> None:
    """Our config-sized tracker at ``full`` is Meta's ``build_tracker`` module for module."""
    import sam3.model_builder as official

    with _parameters_on_meta():
        ours = build_tracker(ModelConfig.preset("full"))
        released = official.build_tracker(apply_temporal_disambiguation=False)
    assert _signature(ours) == _signature(released)


def test_video_model_keys_are_the_image_model_plus_the_tracker_and_its_neck() -> None:
    with _parameters_on_meta():
        video = build_video_model("tiny112")
        image = build_model("tiny112")
    keys = set(video.state_dict())
    detector = {k.removeprefix("detector.") for k in keys if k.startswith("detector.")}
    assert {k for k in detector if ".sam2_convs." not in k} == set(image.state_dict())
    assert any(".sam2_convs." in k for k in detector)
    assert keys == {f"detector.{k}" for k in detector} | {k for k in keys if k.startswith("tracker.")}


def _memory_attention_weights(locality: float, monkeypatch: pytest.MonkeyPatch) -> torch.Tensor:
    """The tiny tracker's memory cross-attention weights (256 pixels x 2 memory frames of 256) on random
    inputs, as its own forward computes them."""
    import torch.nn.functional as F

    cfg = ModelConfig.preset("tiny112")
    cfg = cfg.model_copy(update={"tracker": cfg.tracker.model_copy(update={"memory_locality": locality})})
    torch.manual_seed(0)
    attention = build_tracker(cfg).transformer.encoder.layers[0].cross_attn_image
    seen = []
    sdpa = F.scaled_dot_product_attention

    def spy(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **kw: object) -> torch.Tensor:
        seen.append(torch.softmax(q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5, dim=-1))
        return sdpa(q, k, v, **kw)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    side = cfg.feature_size
    pixels = nn.functional.layer_norm(torch.randn(1, side * side, cfg.d_model), (cfg.d_model,))
    memory = torch.randn(1, 2 * side * side, cfg.tracker.memory_dim)
    with torch.no_grad():
        attention(pixels, memory, memory)
    return seen[0][0, 0].reshape(side * side, 2, side, side)


def test_memory_attention_starts_local(monkeypatch: pytest.MonkeyPatch) -> None:
    """With memory_locality, much of each pixel's attention falls within one cell of its own position, in
    every memory frame; default-initialised it is spread over all of them."""
    side = ModelConfig.preset("tiny112").feature_size
    ys, xs = np.divmod(np.arange(side * side), side)
    near = torch.from_numpy(
        (np.abs(ys[:, None] - ys[None]) <= 1) & (np.abs(xs[:, None] - xs[None]) <= 1)
    ).reshape(side * side, 1, side, side)
    for locality, low, high in ((6.0, 0.3, 1.0), (0.0, 0.0, 0.1)):  # uniform: 9 / 256 = 0.035
        weights = _memory_attention_weights(locality, monkeypatch)
        local = float((weights * near).sum() / weights.sum())
        assert low < local <= high, (locality, local)
        frames = weights.sum(dim=(0, 2, 3))
        assert float(frames.min() / frames.max()) > 0.9  # both memory frames are read alike


@pytest.fixture(scope="module")
def videos() -> list:
    return [synthetic_video_record(i, size=96, frames=6) for i in range(3)]


def test_a_clip_prompts_each_object_on_its_first_visible_frame(videos: list) -> None:
    rng = random.Random(1)
    for record in videos:
        clip = sample_clip(record, ClipSampling(frames=6, max_objects=4), RES, rng)
        assert clip is not None and clip.frames.shape == (6, 3, RES, RES)
        k = clip.targets.shape[0]
        assert clip.targets.shape == (k, 6, RES, RES) and 1 <= k <= 4
        rows = sorted(r for g in clip.groups for r in g.objects)
        assert rows == list(range(k))  # every object in exactly one group
        for group in clip.groups:
            for row in group.objects:
                seen = clip.targets[row].flatten(1).any(dim=1)
                assert seen[group.start] and not seen[: group.start].any()
            p = group.prompt
            assert (p.masks is not None) != (p.points is not None)
            if p.masks is not None:  # a mask prompt is the object's own mask on that frame
                assert torch.equal(p.masks[:, 0].bool(), clip.targets[group.objects, group.start])


def test_clicks_and_boxes_lie_on_their_object(videos: list) -> None:
    rng = random.Random(2)
    for kind, labels in (("point", [1]), ("box", [2, 3])):
        clip = sample_clip(videos[0], ClipSampling(frames=6, prompts={kind: 1.0}), RES, rng)
        assert clip is not None
        for group in clip.groups:
            assert group.prompt.labels.tolist() == [labels] * len(group.objects)  # type: ignore[union-attr]
            for row, points in zip(group.objects, group.prompt.points, strict=True):  # type: ignore[arg-type]
                mask = clip.targets[row, group.start].numpy()
                ys, xs = np.nonzero(mask)
                if kind == "point":
                    x, y = points[0].long().tolist()
                    assert mask[y, x]
                else:
                    assert points.tolist() == [[xs.min(), ys.min()], [xs.max() + 1, ys.max() + 1]]


def test_a_video_without_objects_gives_no_clip(videos: list) -> None:
    empty = synthetic_video_record(0, size=96, frames=6)
    for q in empty.queries:
        q.positive, q.instances = False, []
    assert object_masks(empty) == {}
    assert sample_clip(empty, ClipSampling(), RES, random.Random(0)) is None
    with pytest.raises(DataError, match="no trackable object"):
        records_to_clips([empty], ClipSampling(), RES, random.Random(0))


def test_the_tracker_learns_a_clip_and_gradients_reach_only_what_it_uses(videos: list) -> None:
    torch.manual_seed(0)
    model = build_video_model("tiny112")
    batch = records_to_clips(
        videos[:2], ClipSampling(frames=5, prompts={"mask": 1, "point": 1}), RES, random.Random(0)
    )
    criteria = Criteria(nn.Identity(), TrackerCriterion(TrackerLossWeights()))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(12):
        loss, terms = forward_and_loss(model, batch, criteria)
        assert set(terms) == {"total", *TRACK_TERMS} and np.isfinite(terms["total"])
        loss.backward()
        if not losses:  # the tracker and the shared vision encoder learn; the text encoder is not used
            grads = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
            assert any(n.startswith("tracker.sam_mask_decoder") for n in grads)
            assert any(n.startswith("tracker.maskmem_backbone") for n in grads)
            assert any(n.startswith("tracker.transformer") for n in grads)
            assert any(".sam2_convs." in n for n in grads)
            assert any(n.startswith("detector.backbone.vision_backbone.trunk") for n in grads)
            assert not any("language_backbone" in n for n in grads)
        optimizer.step()
        optimizer.zero_grad()
        losses.append(terms["total"])
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3]), losses


def test_an_image_checkpoint_starts_the_video_model_and_a_video_checkpoint_reloads(tmp_path) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(1)
    image = build_model("tiny112")
    video = build_video_model("tiny112")
    load_video_weights(video, image.state_dict(), "image.safetensors")
    for key, value in image.state_dict().items():
        assert torch.equal(video.detector.state_dict()[key], value), key
    neck = {k: v for k, v in image.state_dict().items() if ".vision_backbone.convs." in k}
    for key, value in neck.items():  # the tracker's neck starts as the detector's, as released
        assert torch.equal(video.detector.state_dict()[key.replace(".convs.", ".sam2_convs.")], value)

    torch.manual_seed(2)
    again = build_video_model("tiny112")
    load_video_weights(again, {f"module.{k}": v for k, v in video.state_dict().items()}, "ddp checkpoint")
    for key, value in video.state_dict().items():
        assert torch.equal(again.state_dict()[key], value), key

    # the image model takes a video checkpoint's detector (for image prediction of a joint-stage model)
    detector_only = build_model("tiny112")
    load_weights(detector_only, video.state_dict(), "video checkpoint")
    for key, value in detector_only.state_dict().items():
        if not key.endswith("freqs_cis"):
            assert torch.equal(video.detector.state_dict()[key], value), key

    broken = dict(video.state_dict())
    broken.pop(next(k for k in broken if k.startswith("tracker.maskmem_backbone")))
    with pytest.raises(DataError, match=r"missing keys .*tracker\.maskmem_backbone"):
        load_video_weights(again, broken, "broken checkpoint")
