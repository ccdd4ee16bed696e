"""Stage freezing, parameter groups and the learning-rate schedule."""

from __future__ import annotations

import math

import torch

from components.model.builder import build_model
from components.train.config import OptimConfig
from components.train.optim import build_optimizer, trainable, warmup_inverse_sqrt


def test_presence_stage_trains_only_the_presence_token_and_head() -> None:
    model = build_model("tiny")
    trainable(model, "presence")
    trained = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trained and all("presence" in n for n in trained)
    optimizer, _ = build_optimizer(model, OptimConfig(lr=1e-3, vision_lr=1e-4))
    assert {g["name"] for g in optimizer.param_groups} <= {"rest", "rest_no_decay"}
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    for p in model.parameters():
        if p.requires_grad:
            p.grad = torch.ones_like(p)
    optimizer.step()
    assert all(torch.equal(frozen[n], p) for n, p in model.named_parameters() if n in frozen)


def test_detector_stage_groups_get_their_learning_rates() -> None:
    model = build_model("tiny")
    trainable(model, "detector")
    optimizer, _ = build_optimizer(model, OptimConfig(lr=1e-3, vision_lr=1e-4, text_lr=5e-4))
    lrs = {g["name"]: g["initial_lr"] for g in optimizer.param_groups}  # before warmup scaling
    assert lrs["vision"] == 1e-4 and lrs["text"] == 5e-4 and lrs["rest"] == 1e-3
    assert all(g["weight_decay"] == 0 for g in optimizer.param_groups if g["name"].endswith("no_decay"))


def test_warmup_then_inverse_square_root() -> None:
    f = warmup_inverse_sqrt(10)
    assert f(0) == 0.1 and f(9) == 1.0 and f(10) == 1.0
    assert math.isclose(f(40), 0.5)
    assert warmup_inverse_sqrt(0)(1000) == 1.0
