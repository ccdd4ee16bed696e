"""Optimizer and schedule: AdamW with per-group learning rates, linear warmup, then inverse square root
(as released) or a cosine decay to 0."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import torch
from torch import nn

from components.train.config import OptimConfig, Part, Stage

log = logging.getLogger(__name__)

# parameter-name prefixes of the groups that may get their own learning rate (image model; video model)
VISION_PREFIXES = ("backbone.vision_backbone", "detector.backbone.vision_backbone")
TEXT_PREFIXES = ("backbone.language_backbone", "detector.backbone.language_backbone")
TRACKER_NECK = ".sam2_convs."
"""The vision neck's convolutions that feed only the tracker: trained with the tracker."""


PARTS: dict[Part, tuple[str, ...]] = {
    "vision": ("backbone.vision_backbone.",),
    "text": ("backbone.language_backbone.",),
    "geometry": ("geometry_encoder.",),
    "encoder": ("transformer.encoder.",),
    "decoder": ("transformer.decoder.", "segmentation_head.", "dot_prod_scoring."),
}
"""Parameter-name prefixes of the parts ``optim.frozen`` can name, as the image model and stage 0's model
name them (the video model puts ``detector.`` before them). The presence token and head are the decoder's;
the vision neck's tracker-only convolutions are the tracker's, never the vision part's."""


def trainable(model: nn.Module, stage: Stage, cfg: OptimConfig | None = None) -> None:
    """Freeze what a stage does not train.

    presence: only the presence token and head. tracker: the tracker and its neck, and
    the detector only when ``cfg.detector_lr`` is set. pretrain, detector, joint: everything. In every
    stage the parts named in ``cfg.frozen`` are frozen on top (a frozen parameter gets no gradient, so
    ``build_optimizer`` leaves it out and it keeps its value bit for bit).
    """
    detector_too = cfg is not None and cfg.detector_lr is not None
    frozen = cfg.frozen if cfg is not None else ()
    trained = total = 0
    for name, p in model.named_parameters():
        if stage == "presence":
            trains = "presence" in name
        elif stage == "tracker":
            trains = _tracker_part(name) or detector_too
        else:
            trains = True
        p.requires_grad_(trains and not in_parts(name, frozen))
        total += p.numel()
        trained += p.numel() if p.requires_grad else 0
    log.info(
        "%s stage trains %.2fM of %.2fM parameters%s",
        stage,
        trained / 1e6,
        total / 1e6,
        f" (frozen: {', '.join(frozen)})" if frozen else "",
    )


def in_parts(name: str, parts: tuple[Part, ...]) -> bool:
    """Whether parameter ``name`` belongs to one of ``parts`` (PARTS)."""
    if not parts or TRACKER_NECK in name:
        return False
    bare = name.removeprefix("detector.")
    return any(bare.startswith(PARTS[part]) for part in parts)


def _tracker_part(name: str) -> bool:
    return name.startswith("tracker.") or TRACKER_NECK in name


def param_groups(model: nn.Module, cfg: OptimConfig, stage: Stage | None = None) -> list[dict[str, object]]:
    groups: dict[str, list[nn.Parameter]] = {"vision": [], "text": [], "rest": [], "detector": []}
    no_decay: dict[str, list[nn.Parameter]] = {k: [] for k in groups}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        group = (
            "detector"
            if stage == "tracker" and not _tracker_part(name)
            else "vision"
            if name.startswith(VISION_PREFIXES) and TRACKER_NECK not in name
            else "text"
            if name.startswith(TEXT_PREFIXES)
            else "rest"
        )
        (no_decay if p.ndim <= 1 or name.endswith(".bias") else groups)[group].append(p)
    lrs = {
        "vision": cfg.vision_lr or cfg.lr,
        "text": cfg.text_lr or cfg.lr,
        "rest": cfg.lr,
        "detector": cfg.detector_lr or cfg.lr,
    }
    out: list[dict[str, object]] = []
    for group, params in groups.items():
        if params:
            out.append({"name": group, "params": params, "lr": lrs[group], "weight_decay": cfg.weight_decay})
        if no_decay[group]:
            out.append(
                {
                    "name": f"{group}_no_decay",
                    "params": no_decay[group],
                    "lr": lrs[group],
                    "weight_decay": 0.0,
                }
            )
    return out


def warmup_inverse_sqrt(warmup_steps: int) -> Callable[[int], float]:
    """LR factor: linear warmup to 1, then sqrt(warmup / step); constant 1 without warmup."""

    def factor(step: int) -> float:
        if warmup_steps <= 0:
            return 1.0
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return math.sqrt(warmup_steps / step)

    return factor


def warmup_cosine(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """LR factor: linear warmup to 1, then half a cosine down to 0 at ``total_steps``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        span = max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup_steps) / span)))

    return factor


def build_optimizer(
    model: nn.Module, cfg: OptimConfig, stage: Stage | None = None, total_steps: int | None = None
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over the trainable parameters and its schedule (``total_steps``: the cosine's end)."""
    groups = param_groups(model, cfg, stage)
    if not groups:
        raise ValueError("no trainable parameters")
    params = [p for g in groups for p in g["params"]]  # type: ignore[attr-defined]
    # one fused kernel per step where PyTorch has it (CPU and CUDA): for the stage-0 model on one CPU thread
    # the per-tensor loop took 30-50 ms per step, the fused kernel 9 ms; a whole stage-0 run takes 0.86 of
    # the time (benchmarks/train_step.py)
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    optimizer = torch.optim.AdamW(groups, betas=(0.9, 0.999), eps=1e-8, fused=fused)
    if cfg.schedule == "cosine":
        if total_steps is None:
            raise ValueError("the cosine schedule needs the stage's step count")
        factor = warmup_cosine(cfg.warmup_steps, total_steps)
    else:
        factor = warmup_inverse_sqrt(cfg.warmup_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    return optimizer, scheduler
