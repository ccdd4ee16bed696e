"""Stage freezing, parameter groups and the learning-rate schedule."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from safetensors.torch import save_file

from components.model.builder import build_model
from components.storage import ObjectStore
from components.train.checkpoint import CheckpointStore
from components.train.config import OptimConfig, TrainConfig
from components.train.optim import build_optimizer, trainable, warmup_cosine, warmup_inverse_sqrt


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


def test_detector_stage_can_keep_the_aligned_encoders_frozen() -> None:
    model = build_model("tiny")
    trainable(model, "detector", OptimConfig(frozen=("vision", "text")))
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trained and not any(n.startswith("backbone.") for n in trained)
    assert any(n.startswith("transformer.") for n in trained)
    optimizer, _ = build_optimizer(model, OptimConfig(lr=1e-3, frozen=("vision", "text")), "detector")
    assert {g["name"] for g in optimizer.param_groups} <= {"rest", "rest_no_decay"}
    trainable(model, "detector", OptimConfig(frozen=("text",)))
    assert all(
        p.requires_grad != n.startswith("backbone.language_backbone") for n, p in model.named_parameters()
    )


def test_warmup_then_inverse_square_root() -> None:
    f = warmup_inverse_sqrt(10)
    assert f(0) == 0.1 and f(9) == 1.0 and f(10) == 1.0
    assert math.isclose(f(40), 0.5)
    assert warmup_inverse_sqrt(0)(1000) == 1.0


def test_warmup_then_cosine_to_zero() -> None:
    f = warmup_cosine(10, 110)
    assert f(0) == 0.1 and f(9) == 1.0 and f(10) == 1.0
    assert math.isclose(f(60), 0.5) and math.isclose(f(110), 0.0, abs_tol=1e-12) and f(500) == 0.0
    model = torch.nn.Linear(2, 2)
    optimizer, scheduler = build_optimizer(
        model, OptimConfig(lr=1e-3, warmup_steps=0, schedule="cosine"), None, 4
    )
    lrs = []
    for _ in range(5):
        lrs.append(round(scheduler.get_last_lr()[0], 8))
        optimizer.step()
        scheduler.step()
    assert lrs == [1e-3, 8.5355e-4, 5e-4, 1.4645e-4, 0.0]


def test_tracker_stage_freezes_the_detector_unless_it_has_a_learning_rate() -> None:
    from components.model.video import build_video_model

    model = build_video_model("tiny112")
    trainable(model, "tracker", OptimConfig())
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trained and all(n.startswith("tracker.") or ".sam2_convs." in n for n in trained)
    trainable(model, "tracker", OptimConfig(lr=1e-3, detector_lr=1e-5))
    optimizer, _ = build_optimizer(model, OptimConfig(lr=1e-3, detector_lr=1e-5), "tracker")
    lrs = {g["name"]: g["initial_lr"] for g in optimizer.param_groups}
    assert lrs["detector"] == 1e-5 and lrs["rest"] == 1e-3
    detector = {
        id(p) for g in optimizer.param_groups if g["name"].startswith("detector") for p in g["params"]
    }
    named = dict(model.named_parameters())
    assert all(id(named[n]) not in detector for n in named if n.startswith("tracker.") or ".sam2_convs." in n)
    trainable(model, "joint", OptimConfig())
    assert all(p.requires_grad for p in model.parameters())


def test_adamw_runs_fused_on_the_cpu() -> None:
    # one kernel for every parameter instead of a loop over tensors (benchmarks/train_step.py)
    optimizer, _ = build_optimizer(build_model("tiny112"), OptimConfig(lr=1e-3))
    assert all(group["fused"] for group in optimizer.param_groups)


def test_each_freezable_part_names_its_parameters_and_the_optimizer_leaves_them_out() -> None:
    from components.train.optim import PARTS

    model = build_model("tiny112")
    named = dict(model.named_parameters())
    for part, prefixes in PARTS.items():
        cfg = OptimConfig(frozen=(part,))
        trainable(model, "detector", cfg)
        frozen = {n for n, p in named.items() if not p.requires_grad}
        assert frozen and all(n.startswith(prefixes) for n in frozen), part
        optimizer, _ = build_optimizer(model, cfg, "detector")
        held = {id(p) for g in optimizer.param_groups for p in g["params"]}
        assert not held & {id(named[n]) for n in frozen}, part
        assert held == {id(p) for p in named.values() if p.requires_grad}, part
    # on top of a stage's own choice: the presence stage with its decoder frozen has nothing to train
    trainable(model, "presence", OptimConfig(frozen=("decoder",)))
    assert not any(p.requires_grad for p in model.parameters())


def test_frozen_parts_are_bit_identical_after_training_and_absent_from_the_optimizer_state(
    dataset: str, store: ObjectStore, s3_env: dict[str, str], tmp_path: Path
) -> None:
    """Real steps of the trainer (in this process) from a saved start: the frozen parts come out bit for bit
    as they went in, the trained ones move, and the optimizer state holds the trained parameters only."""
    from components.train.optim import PARTS
    from components.train.trainer import Trainer

    model = build_model("tiny112")
    start = model.state_dict()
    save_file({k: v.contiguous() for k, v in start.items()}, tmp_path / "start.safetensors")
    parts = ("vision", "text", "geometry", "decoder")
    cfg = TrainConfig(
        stage="detector",
        dataset=dataset,
        run_id="freeze",
        size="tiny112",
        steps=2,
        batch_size=1,
        checkpoint_every=2,
        data_workers=0,
        init=str(tmp_path / "start.safetensors"),
        optim=OptimConfig(lr=0.05, warmup_steps=0, frozen=parts),
    )
    Trainer(cfg, store).train()
    restored = CheckpointStore(store, cfg.prefix).restore()
    assert restored is not None and restored.step == 2
    frozen = {k for k in start if k.startswith(tuple(p for part in parts for p in PARTS[part]))}
    trained = {n for n, _ in model.named_parameters()} - frozen
    assert frozen and trained == {k for k in trained if k.startswith("transformer.encoder.")}
    assert all(torch.equal(restored.weights[k], start[k]) for k in frozen)
    assert any(not torch.equal(restored.weights[k], start[k]) for k in trained)
    state = restored.state["optimizer"]
    held = [i for g in state["param_groups"] for i in g["params"]]
    assert len(held) == len(trained) and set(state["state"]) == set(held)  # Adam moments: trained only
    numel = sum(s["exp_avg"].numel() for s in state["state"].values())
    assert numel == sum(start[k].numel() for k in trained)
