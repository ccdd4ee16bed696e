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
Pairs are labelled from the data (components.model.align_labels); pairs whose
answer the data does not tell are left out; positives and negatives weigh the
same in the loss, whatever their counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from components.model.config import ModelConfig

BACKBONE = "backbone."
"""State-dict prefix of the shared encoders: the detector stage loads exactly these keys."""
HEAD = "align."
"""State-dict prefix of the alignment head, which only stage 0 has."""
ALIGN_TERMS = ("align_pair", "align_local", "align_acc")
"""The loss terms stage 0 logs (the last one an accuracy, not in the total)."""


class AlignmentHead(nn.Module):
    """Projections and the two scalars of the pairwise score (not carried into the detector)."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.image_proj = nn.Linear(d_model, d_model)
        self.text_proj = nn.Linear(d_model, d_model)
        self.log_scale = nn.Parameter(torch.tensor(math.log(10.0)))
        self.bias = nn.Parameter(torch.tensor(0.0))
        self.local_bias = nn.Parameter(torch.tensor(-2.0))

    def forward(
        self, pixels: torch.Tensor, text: torch.Tensor, text_pad: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """pixels (B, C, H, W), text (L, P, C) with padding mask (P, L) -> logits per pair (B, P) and per
        pair and location (B, P, H, W)."""
        keep = (~text_pad).T.unsqueeze(-1).to(text.dtype)  # (L, P, 1)
        phrase = (text * keep).sum(0) / keep.sum(0).clamp(min=1)  # mean over real tokens: (P, C)
        phrase = F.normalize(self.text_proj(phrase), dim=-1)
        where = F.normalize(self.image_proj(pixels.flatten(2).transpose(1, 2)), dim=-1)  # (B, HW, C)
        scores = torch.einsum("bnc,pc->bpn", where, phrase) * self.log_scale.exp().clamp(max=100.0)
        pooled = torch.logsumexp(scores, dim=-1) - math.log(scores.shape[-1])
        return pooled + self.bias, (scores + self.local_bias).unflatten(-1, pixels.shape[-2:])


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
        return self.score(images, phrases)[0]

    def score(self, images: torch.Tensor, phrases: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Presence logits (B, P) and per-location logits (B, P, H, W) on the feature grid."""
        vision = self.image_features(images)
        backbone: Any = self.backbone
        text = backbone.forward_text(phrases, device=images.device)
        logits: tuple[torch.Tensor, torch.Tensor] = self.align(
            vision, text["language_features"], text["language_mask"]
        )
        return logits


def build_alignment_model(size_or_config: str | ModelConfig) -> AlignmentModel:
    """The stage-0 model at a preset's size: the same backbone modules as ``build_model``'s."""
    from components.model.builder import build_backbone

    cfg = ModelConfig.preset(size_or_config) if isinstance(size_or_config, str) else size_or_config
    return AlignmentModel(build_backbone(cfg), cfg.d_model)


@dataclass
class AlignBatch:
    """Images, the batch's phrases, per pair a label and whether it is known, and per pair and feature
    cell what the data says there: ``where`` (the share of the cell showing the phrase) counts with weight
    ``where_weight`` (0 where the data does not tell)."""

    images: torch.Tensor  # (B, 3, R, R)
    phrases: list[str]
    labels: torch.Tensor  # (B, P) float 0/1
    known: torch.Tensor  # (B, P) bool
    where: torch.Tensor  # (B, P, h, w) float in [0, 1]
    where_weight: torch.Tensor  # (B, P, h, w) float in [0, 1]
    media_ids: list[str]

    @property
    def num_images(self) -> int:
        return len(self.media_ids)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> AlignBatch:
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> AlignBatch:
        return self._map(lambda t: t.pin_memory())

    def _map(self, fn: Any) -> AlignBatch:
        return AlignBatch(
            fn(self.images),
            self.phrases,
            fn(self.labels),
            fn(self.known),
            fn(self.where),
            fn(self.where_weight),
            self.media_ids,
        )


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
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Balanced sigmoid losses: per known pair on the pooled logit (``pair_weight``), and per feature cell
    where the data tells whether the phrase is shown there (``local_weight``; 0 turns it off).

    Returns (loss, terms): ``align_pair``, ``align_local``, ``align_acc`` (share of known pairs on the
    right side of 0), detached.
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
    right = ((logits > 0) == (batch.labels > 0.5)) & batch.known
    terms["align_acc"] = (right.sum() / batch.known.sum().clamp(min=1)).detach()
    return loss, terms


def pair_answers(
    records: list[Any], ontology: Any | None = None
) -> list[tuple[frozenset[str], frozenset[str]]]:
    """Per image record, (present phrases, absent phrases) as its queries and the ontology tell.

    A queried positive is present, a queried negative absent; with an ``ontology``
    (components.negatives.ontology.Ontology), every ancestor of a present concept is
    present too and every descendant of an absent one absent.
    """
    out = []
    for record in records:
        present = {q.noun_phrase for q in record.queries if q.positive}
        absent = {q.noun_phrase for q in record.queries if not q.positive}
        if ontology is not None:
            for phrase in list(present):
                present |= ontology.ancestors(phrase)
            for phrase in list(absent):
                absent |= ontology.descendants(phrase)
        out.append((frozenset(present), frozenset(absent - present)))
    return out


def _coverage(record: Any, counts: str, grid: int) -> np.ndarray:
    """The share of each of grid x grid cells an RLE mask (at the record's size) covers."""
    import cv2
    from pycocotools import mask as mask_utils

    mask = mask_utils.decode({"size": [record.height, record.width], "counts": counts.encode()})
    return np.asarray(cv2.resize(mask.astype(np.float32), (grid, grid), interpolation=cv2.INTER_AREA))


def instance_attributes(record: Any, ontology: Any | None) -> dict[str, dict[str, str]]:
    """What the data says each instance of an image is, keyed by its mask (an instance's identity across
    queries: ``object_id`` numbers instances within one query only): the attributes of every positive
    concept that lists it, merged (an instance of "small red circle" and of "striped circle" is small, red,
    striped and a circle). Empty without an ontology; phrases the ontology does not know add nothing."""
    out: dict[str, dict[str, str]] = {}
    if ontology is None:
        return out
    for query in record.queries:
        concept = ontology.by_name.get(query.noun_phrase) if query.positive else None
        if concept is None:
            continue
        for instance in query.instances:
            if instance.masks and instance.masks[0] and not instance.crowd:
                out.setdefault(instance.masks[0], {}).update(concept.attributes)
    return out


def shows(concept: dict[str, str], attributes: dict[str, str]) -> bool | None:
    """Whether an instance with these attributes is an instance of the concept: None when the concept
    names an attribute the instance's are silent on (or the concept has none, so nothing is known)."""
    if not concept or any(name not in attributes for name in concept):
        return None
    return all(attributes[name] == value for name, value in concept.items())


def records_to_align_batch(
    records: list[Any], *, resolution: int, grid: int, ontology: Any | None = None
) -> AlignBatch:
    """Every phrase any image of ``records`` has an answer for, against every image (videos skipped).

    Per pair: present or absent as the queries and the ontology tell (``pair_answers``). Per feature
    cell (``grid``: resolution / patch size), what follows from the instances' masks:

    - a queried phrase whose instances are listed exhaustively: its instances' cells show it, every
      other cell does not; an absent phrase: no cell shows it;
    - any other phrase with attributes in the ontology: the cells of each instance whose attributes the
      data tells (``instance_attributes``) show it or not, by those attributes (single-valued: a red
      circle is not a blue one); the background stays unknown, since unlisted instances may be there.
    """
    from components.errors import DataError
    from components.model.batch import decode_image

    images = [r for r in records if r.kind == "image"]
    if not images:
        raise DataError("no image in this batch (the alignment stage trains on images)")
    answers = pair_answers(images, ontology)
    phrases = sorted(set().union(*(p | a for p, a in answers)))
    if not phrases:
        raise DataError("no query in this batch's images")
    column = {p: j for j, p in enumerate(phrases)}
    concepts = {
        p: dict(ontology.by_name[p].attributes) if ontology is not None and p in ontology.by_name else {}
        for p in phrases
    }
    shape = (len(images), len(phrases))
    labels, known = np.zeros(shape, np.float32), np.zeros(shape, bool)
    where, weight = np.zeros((*shape, grid, grid), np.float32), np.zeros((*shape, grid, grid), np.float32)
    for i, ((present, absent), record) in enumerate(zip(answers, images, strict=True)):
        labels[i, [column[p] for p in present]] = 1.0
        known[i, [column[p] for p in present | absent]] = True
        masks: dict[str, np.ndarray] = {}  # by RLE: the same object in several queries has one mask
        for query in record.queries:
            for instance in query.instances:
                counts = instance.masks[0] if instance.masks else None
                if counts and not instance.crowd and counts not in masks:
                    masks[counts] = _coverage(record, counts, grid)
        attributes = instance_attributes(record, ontology)
        objects = [n for n in attributes if n in masks]
        if objects:
            stack = np.stack([masks[n] for n in objects])  # (O, h, w)
            answer = [[shows(concepts[p], attributes[n]) for n in objects] for p in phrases]
            decided = np.array([[a is not None for a in row] for row in answer], np.float32)
            matched = np.array([[a is True for a in row] for row in answer], np.float32)
            weight[i] = (decided[:, :, None, None] * stack).max(1)
            where[i] = (matched[:, :, None, None] * stack).max(1)
        gone = [column[p] for p in absent]
        where[i, gone], weight[i, gone] = 0.0, 1.0
        for query in record.queries:
            if query.positive and query.exhaustive and query.instances:
                j = column[query.noun_phrase]
                cover = [masks[n.masks[0]] for n in query.instances if n.masks and n.masks[0] in masks]
                if cover:
                    where[i, j] = np.max(cover, axis=0)
                weight[i, j] = 1.0
    pixels = torch.stack([decode_image(r, resolution) for r in images])
    return AlignBatch(
        pixels,
        phrases,
        torch.from_numpy(labels),
        torch.from_numpy(known),
        torch.from_numpy(where),
        torch.from_numpy(weight),
        [r.media_id for r in images],
    )
