"""The official SAM 3 criterion with the project's loss weights, and one forward + loss step.

The criterion is the released training recipe: ``Sam3LossWrapper`` over box
(L1 + GIoU), classification (IoU-aware BCE, with the presence loss) and mask
(focal + dice) terms, and optionally the official semantic-segmentation
criterion (BCE + dice on the mask head's per-phrase map of every instance;
``LossWeights.semantic_*``); one-to-one matching by ``BinaryHungarianMatcherV2``
(inside the model's forward), one-to-many by ``BinaryOneToManyMatcher`` (DAC
queries, weight 2); the loss is scaled by sqrt(queries in the batch).
Non-exhaustive queries get no loss on unmatched predictions (``weak_loss``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from components.model.align import alignment_loss
from components.model.align_batch import AlignBatch
from components.model.batch import ModelBatch
from components.model.clips import ClipBatch
from components.model.compat import ensure_compat
from components.model.settings import AlignLossWeights, LossWeights

log = logging.getLogger(__name__)

TOTAL = "core_loss"  # sam3.train.loss.loss_fns.CORE_LOSS_KEY
MAIN_TERMS = {
    "box_l1": "loss_bbox",
    "giou": "loss_giou",
    "classification": "loss_ce",
    "presence": "presence_loss",
    "mask_focal": "loss_mask",
    "mask_dice": "loss_dice",
    "semantic_seg": "loss_semantic_seg",
    "semantic_dice": "loss_semantic_dice",
}
"""LossWeights field -> the official key of that term on the final decoder layer's one-to-one output.

The criterion also reports each term on auxiliary layers (``<key>_aux_<i>``) and on
the one-to-many queries (``<key>_o2m``, ``<key>_aux_<i>_o2m``), and two accuracies
(``ce_f1``, ``presence_dec_acc``) that do not enter the total.
"""


def build_criterion(weights: LossWeights, *, presence: bool = True) -> nn.Module:
    """The official loss wrapper with these weights (works with or without a process group).

    ``presence`` off: the classification loss as the official model trains without a presence head (every
    query of every pair supervised, negatives included) and no presence loss."""
    ensure_compat()
    from sam3.train.loss.loss_fns import Boxes, IABCEMdetr, Masks, SemanticSegCriterion
    from sam3.train.loss.sam3_loss import Sam3LossWrapper
    from sam3.train.matcher import BinaryHungarianMatcherV2, BinaryOneToManyMatcher

    semantic = None
    if weights.semantic_seg or weights.semantic_dice:
        semantic = SemanticSegCriterion(
            weight_dict={
                "loss_semantic_seg": weights.semantic_seg,
                "loss_semantic_dice": weights.semantic_dice,
            }
        )
    return Sam3LossWrapper(
        loss_fns_find=[
            Boxes(weight_dict={"loss_bbox": weights.box_l1, "loss_giou": weights.giou}),
            IABCEMdetr(
                weak_loss=True,
                weight_dict={
                    "loss_ce": weights.classification,
                    "presence_loss": weights.presence if presence else 0.0,
                },
                pos_weight=10.0,
                alpha=0.25,
                gamma=2,
                use_presence=presence,
                pos_focal=False,
            ),
            Masks(
                weight_dict={"loss_mask": weights.mask_focal, "loss_dice": weights.mask_dice},
                focal_alpha=0.25,
                focal_gamma=2.0,
                compute_aux=False,
            ),
        ],
        normalization="global",
        matcher=BinaryHungarianMatcherV2(
            focal=True, cost_class=2.0, cost_bbox=5.0, cost_giou=2.0, alpha=0.25, gamma=2, stable=False
        ),
        o2m_matcher=BinaryOneToManyMatcher(alpha=0.3, threshold=0.4, topk=4),
        o2m_weight=2.0,
        use_o2m_matcher_on_o2m_aux=False,
        loss_fn_semantic_seg=semantic,
        scale_by_find_batch_size=True,
    )


@dataclass
class Criteria:
    """The losses of a stage: the image criterion, and the tracker's for the video stages."""

    image: nn.Module
    tracker: nn.Module | None = None
    align: AlignLossWeights | None = None


class WithLoss(nn.Module):
    """A model and its criteria as one module whose ``forward`` returns (total loss, detached terms).

    The video stages' DDP wrapper goes around this: DDP then finds the parameters
    that reach the loss from the loss itself, whatever the batch kind (a clip step
    does not use the text encoder, an image step does not use the tracker, and the
    detector's outputs hold heads that never reach its loss).
    """

    def __init__(self, model: nn.Module, criteria: Criteria) -> None:
        super().__init__()
        self.model = model
        self.criteria = criteria

    def forward(self, batch: ModelBatch | ClipBatch | AlignBatch) -> tuple[torch.Tensor, dict[str, Any]]:
        losses = _losses(self.model, batch, self.criteria)
        total = losses.pop("total")
        return total, {k: torch.as_tensor(v).detach() for k, v in losses.items()}


def forward_and_loss(
    model: nn.Module, batch: ModelBatch | ClipBatch | AlignBatch, criterion: nn.Module | Criteria
) -> tuple[torch.Tensor, dict[str, float]]:
    """Run the model on ``batch`` (already on the model's device) and return (total loss, every term).

    The total is a scalar tensor with a graph for ``backward()``. The terms are
    floats: ``"total"`` (its value), then each term unweighted, keyed as the
    official trainer logs them (see ``MAIN_TERMS``); a clip batch gives the
    tracker's terms (components.model.clips.TRACK_TERMS). ``model`` may be a
    ``WithLoss`` (DDP-wrapped or not), which holds its own criteria.
    """
    inner = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    if isinstance(inner, WithLoss):
        total, rest = model(batch)
        losses: dict[str, Any] = {"total": total, **rest}
    else:
        losses = _losses(model, batch, criterion if isinstance(criterion, Criteria) else Criteria(criterion))
    total = losses["total"]
    names = ["total", *(k for k in losses if k != "total")]
    values = torch.stack(
        [torch.as_tensor(losses[k], dtype=torch.float32, device=total.device).detach() for k in names]
    )
    return total, dict(zip(names, values.tolist(), strict=True))  # one device sync for all terms


def _losses(
    model: nn.Module, batch: ModelBatch | ClipBatch | AlignBatch, criteria: Criteria
) -> dict[str, Any]:
    """Every loss term of one batch, ``"total"`` (with its graph) among them."""
    if isinstance(batch, AlignBatch):
        weights = criteria.align or AlignLossWeights()
        aligner: Any = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
        instances = (batch.instance_cover, batch.instance_image) if weights.instance > 0 else None
        scores = aligner.score(batch.images, batch.phrases, instances)
        total, terms = alignment_loss(
            scores.pair, scores.local, batch, weights.pair, weights.local, scores.instance, weights.instance
        )
        return {"total": total, **terms}
    if isinstance(batch, ClipBatch):
        if criteria.tracker is None:
            raise ValueError("a clip batch needs the tracker's criterion")
        total, terms = criteria.tracker(model(batch), batch)
        losses: dict[str, Any] = {"total": total, **terms}
    else:
        find_stages = model(batch.data)
        inner: Any = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
        targets = [inner.back_convert(target) for target in batch.data.find_targets]
        losses = criteria.image(find_stages, targets)
        losses["total"] = losses.pop(TOTAL)
    return losses
