"""Optimizer and schedule: AdamW with per-group learning rates, linear warmup, then inverse square root."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from components.train.config import OptimConfig, Stage

# parameter-name prefixes of the groups that may get their own learning rate
VISION_PREFIXES = ("backbone.vision_backbone",)
TEXT_PREFIXES = ("backbone.language_backbone",)


def trainable(model: nn.Module, stage: Stage) -> None:
    """Freeze what a stage does not train: the presence stage trains only the presence token and head."""
    for name, p in model.named_parameters():
        p.requires_grad_(stage != "presence" or "presence" in name)


def param_groups(model: nn.Module, cfg: OptimConfig) -> list[dict[str, object]]:
    groups: dict[str, list[nn.Parameter]] = {"vision": [], "text": [], "rest": []}
    no_decay: dict[str, list[nn.Parameter]] = {"vision": [], "text": [], "rest": []}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        group = (
            "vision"
            if name.startswith(VISION_PREFIXES)
            else "text"
            if name.startswith(TEXT_PREFIXES)
            else "rest"
        )
        (no_decay if p.ndim <= 1 or name.endswith(".bias") else groups)[group].append(p)
    lrs = {"vision": cfg.vision_lr or cfg.lr, "text": cfg.text_lr or cfg.lr, "rest": cfg.lr}
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


def build_optimizer(
    model: nn.Module, cfg: OptimConfig
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    groups = param_groups(model, cfg)
    if not groups:
        raise ValueError("no trainable parameters")
    optimizer = torch.optim.AdamW(groups, betas=(0.9, 0.999), eps=1e-8)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_inverse_sqrt(cfg.warmup_steps))
    return optimizer, scheduler
