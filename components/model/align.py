"""Stage 0: vision-text alignment of the shared encoders before the detector is trained.

SAM 3's detector starts from a vision encoder already aligned with text; a
detector trained from random weights on a few hundred images never learns to
recognise noun phrases. This stage trains the very modules the detector's
backbone is made of (``SAM3VLBackbone``: the ViT trunk with its neck, and the
text encoder, under the same state-dict keys, ``backbone.*``) with a dense
objective, and hands them to the detector stage as its ``init``.

The objective scores every noun phrase of a batch against every image of the
batch. Each location of the neck's feature map (the ``vision_features`` the
detector's encoder reads) is compared with the phrase's pooled text features
(the ``language_features`` the detector reads) by a scaled cosine; a soft
maximum over locations (logsumexp) gives one presence logit per (image,
phrase). A concept can sit anywhere in an image and an image shows many
concepts at once, so the loss is a sigmoid per pair (as SigLIP), not a softmax
over phrases (as CLIP, which assumes exactly one right caption per image).
Pairs and cells are labelled from the data (components.model.align_batch);
what the data does not tell is left out; positives and negatives weigh the same
in the loss, whatever their counts. A third term scores whole instances: the
projected features averaged over an instance's cells (its mask on the feature
grid) against every phrase the data answers for it. A cell sees a fragment of an
outline; the shape is in the instance's cells together, which is also what the
detector's queries read (each attends inside its box).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from components.model.align_batch import AlignBatch
from components.model.config import ModelConfig

BACKBONE = "backbone."
"""State-dict prefix of the shared encoders: the detector stage loads exactly these keys."""
HEAD = "align."
"""State-dict prefix of the alignment head, which only stage 0 has."""
ALIGN_TERMS = ("align_pair", "align_local", "align_instance", "align_acc")
"""The loss terms stage 0 logs (the last one an accuracy, not in the total)."""


class AlignScores(NamedTuple):
    """Logits per (image, phrase) pair (B, P), per pair and feature cell (B, P, H, W), and per (instance,
    phrase) (N, P) when instances were given (else None)."""

    pair: torch.Tensor
    local: torch.Tensor
    instance: torch.Tensor | None = None


class AlignmentHead(nn.Module):
    """Projections and the two scalars of the pairwise score (not carried into the detector)."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.image_proj = nn.Linear(d_model, d_model)
        self.text_proj = nn.Linear(d_model, d_model)
        self.log_scale = nn.Parameter(torch.tensor(math.log(10.0)))
        self.bias = nn.Parameter(torch.tensor(0.0))
        self.local_bias = nn.Parameter(torch.tensor(-2.0))
        self.instance_bias = nn.Parameter(torch.tensor(-1.0))

    def forward(
        self,
        pixels: torch.Tensor,
        text: torch.Tensor,
        text_pad: torch.Tensor,
        instances: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> AlignScores:
        """pixels (B, C, H, W), text (L, P, C) with padding mask (P, L), and optionally instances (each's
        cover of the H x W cells (N, H, W) and its image (N,)) -> logits per pair, per pair and location,
        and per (instance, phrase)."""
        keep = (~text_pad).T.unsqueeze(-1).to(text.dtype)  # (L, P, 1)
        phrase = (text * keep).sum(0) / keep.sum(0).clamp(min=1)  # mean over real tokens: (P, C)
        phrase = F.normalize(self.text_proj(phrase), dim=-1)
        projected = self.image_proj(pixels.flatten(2).transpose(1, 2))  # (B, HW, C)
        scale = self.log_scale.exp().clamp(max=100.0)
        scores = torch.einsum("bnc,pc->bpn", F.normalize(projected, dim=-1), phrase) * scale
        pooled = torch.logsumexp(scores, dim=-1) - math.log(scores.shape[-1])
        local = (scores + self.local_bias).unflatten(-1, pixels.shape[-2:])
        if instances is None:
            return AlignScores(pooled + self.bias, local)
        cover, image = instances
        # the cover-weighted sum of the instance's projected cells: normalised, the same as their mean
        pooled_cells = torch.einsum("nk,nkc->nc", cover.flatten(1).to(projected.dtype), projected[image])
        per_instance = F.normalize(pooled_cells, dim=-1) @ phrase.T * scale + self.instance_bias
        return AlignScores(pooled + self.bias, local, per_instance)


class AlignmentModel(nn.Module):
    """The detector's backbone (``backbone``) and an alignment head (``align``)."""

    def __init__(self, backbone: nn.Module, d_model: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.align = AlignmentHead(d_model)

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        """The detector's ``vision_features`` (the neck level its encoder reads), computed alone.

        ``SAM3VLBackbone.forward_image`` would also build the finer levels the mask head
        upsamples from (two thirds of the vision compute at the tiny sizes) and drop them here.
        """
        backbone: Any = self.backbone
        neck = backbone.vision_backbone
        level = len(neck.convs) - 1 - backbone.scalp
        features: torch.Tensor = neck.convs[level](neck.trunk(images)[-1])
        return features

    def forward(self, images: torch.Tensor, phrases: list[str]) -> torch.Tensor:
        """Images (B, 3, R, R) and P phrases -> presence logits (B, P)."""
        return self.score(images, phrases).pair

    def score(
        self,
        images: torch.Tensor,
        phrases: list[str],
        instances: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> AlignScores:
        """Presence logits (B, P), per-location logits (B, P, H, W) on the feature grid, and with
        ``instances`` (cover (N, H, W), image index (N,)) per-instance logits (N, P)."""
        vision = self.image_features(images)
        backbone: Any = self.backbone
        text = backbone.forward_text(phrases, device=images.device)
        scores: AlignScores = self.align(vision, text["language_features"], text["language_mask"], instances)
        return scores


def build_alignment_model(size_or_config: str | ModelConfig) -> AlignmentModel:
    """The stage-0 model at a preset's size: the same backbone modules as ``build_model``'s."""
    from components.model.builder import build_backbone

    cfg = ModelConfig.preset(size_or_config) if isinstance(size_or_config, str) else size_or_config
    return AlignmentModel(build_backbone(cfg), cfg.d_model)


def _balanced(per_item: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The mean loss of the positive part and of the negative part (soft targets split), halved."""
    weight = weight.to(per_item.dtype)
    parts = []
    for share in (target, 1 - target):
        mass = (share * weight).sum()
        if mass > 0:
            parts.append((per_item * share * weight).sum() / mass)
    return torch.stack(parts).mean() if parts else per_item.sum() * 0.0


def alignment_loss(
    logits: torch.Tensor,
    local: torch.Tensor,
    batch: AlignBatch,
    pair_weight: float = 1.0,
    local_weight: float = 1.0,
    instance: torch.Tensor | None = None,
    instance_weight: float = 0.0,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Balanced sigmoid losses: per known pair on the pooled logit (``pair_weight``), per feature cell
    where the data tells whether the phrase is shown there (``local_weight``; 0 turns it off), and per
    known (instance, phrase) on the instance's logits ``instance`` (``instance_weight``; 0 turns it off).

    Returns (loss, terms): ``align_pair``, ``align_local``, ``align_instance``, ``align_acc`` (share of
    known pairs on the right side of 0), detached.
    """
    per_pair = F.binary_cross_entropy_with_logits(logits.float(), batch.labels, reduction="none")
    # a phrase counts where the batch has both answers for it: then the loss ranks images, instead of
    # teaching a phrase's prior (a bare shape is present in almost every image that answers it)
    both = (batch.known & (batch.labels > 0.5)).any(0) & (batch.known & (batch.labels <= 0.5)).any(0)
    pair = _balanced(per_pair, batch.labels, batch.known & both) if both.any() else per_pair.sum() * 0.0
    terms: dict[str, Any] = {"align_pair": pair.detach()}
    loss = pair_weight * pair
    if local_weight > 0:
        per_location = F.binary_cross_entropy_with_logits(local.float(), batch.where, reduction="none")
        spatial = _balanced(per_location, batch.where, batch.where_weight)
        loss = loss + local_weight * spatial
        terms["align_local"] = spatial.detach()
    if instance_weight > 0:
        if instance is None:
            raise ValueError("instance_weight > 0 needs the per-instance logits")
        per_instance = F.binary_cross_entropy_with_logits(
            instance.float(), batch.instance_labels, reduction="none"
        )
        whole = _balanced(per_instance, batch.instance_labels, batch.instance_known)
        loss = loss + instance_weight * whole
        terms["align_instance"] = whole.detach()
    right = ((logits > 0) == (batch.labels > 0.5)) & batch.known
    terms["align_acc"] = (right.sum() / batch.known.sum().clamp(min=1)).detach()
    return loss, terms
