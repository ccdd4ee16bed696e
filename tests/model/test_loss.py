"""The official criterion with our weights: one step's loss and terms, negatives, and an overfit check."""

from __future__ import annotations

import copy
import math
import random

import pytest
import torch

from components.model.batch import ModelBatch, records_to_batch
from components.model.builder import build_model
from components.model.loss import MAIN_TERMS, build_criterion, forward_and_loss
from components.model.settings import LossWeights
from components.schemas import MediaRecord
from tests.model.conftest import TINY_RESOLUTION


def _batch(records: list[MediaRecord], queries: int = 4, exemplar_prob: float = 0.0) -> ModelBatch:
    return records_to_batch(
        records,
        resolution=TINY_RESOLUTION,
        max_queries_per_image=queries,
        exemplar_prob=exemplar_prob,
        rng=random.Random(0),
    )


def test_loss_and_terms(records: list[MediaRecord]) -> None:
    torch.manual_seed(0)
    model = build_model("tiny112").train()
    weights = LossWeights(semantic_seg=20.0, semantic_dice=30.0)  # every term, the optional one included
    total, terms = forward_and_loss(model, _batch(records, exemplar_prob=0.5), build_criterion(weights))
    assert total.ndim == 0 and total.requires_grad and math.isfinite(total.item())
    assert terms["total"] == pytest.approx(total.item())
    assert set(MAIN_TERMS.values()) <= set(terms)
    assert {"loss_bbox_aux_0", "loss_bbox_o2m", "ce_f1"} <= set(terms)
    assert all(math.isfinite(v) for v in terms.values())
    total.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    semantic_head = model.segmentation_head.semantic_seg_head.weight.grad
    assert semantic_head is not None and semantic_head.abs().sum() > 0


def test_the_semantic_criterion_is_off_by_default(records: list[MediaRecord]) -> None:
    torch.manual_seed(0)
    model = build_model("tiny112").train()
    _, terms = forward_and_loss(model, _batch(records), build_criterion(LossWeights()))
    assert "loss_semantic_seg" not in terms and "loss_mask" in terms


def test_weights_scale_their_terms(records: list[MediaRecord]) -> None:
    batch = _batch(records)
    totals = []
    for weights in (LossWeights(), LossWeights(mask_dice=0.0, mask_focal=0.0)):
        torch.manual_seed(0)
        model = build_model("tiny112").train()
        total, terms = forward_and_loss(model, batch, build_criterion(weights))
        totals.append((total.item(), terms))
    (with_masks, terms), (without_masks, _) = totals
    scale = batch.num_queries**0.5  # the released recipe scales by sqrt(queries in the batch)
    # the final layer's mask terms, and the one-to-many queries' where any matched (reported already
    # multiplied by the o2m weight)
    masks = sum(
        LossWeights().mask_focal * terms.get(f"loss_mask{suffix}", 0.0)
        + LossWeights().mask_dice * terms.get(f"loss_dice{suffix}", 0.0)
        for suffix in ("", "_o2m")
    )
    assert with_masks - without_masks == pytest.approx(scale * masks, rel=1e-4)


def test_a_batch_of_negatives_only(records: list[MediaRecord]) -> None:
    records = copy.deepcopy(records)
    for record in records:
        record.queries = [q for q in record.queries if not q.positive]
    torch.manual_seed(0)
    model = build_model("tiny112").train()
    batch = _batch(records)
    assert batch.data.find_targets[0].num_boxes.sum() == 0
    total, terms = forward_and_loss(model, batch, build_criterion(LossWeights()))
    assert math.isfinite(total.item()) and terms["presence_loss"] > 0
    total.backward()


@pytest.mark.slow
def test_tiny_model_overfits_two_images(records: list[MediaRecord]) -> None:
    torch.manual_seed(0)
    model = build_model("tiny112").train()
    batch = _batch(records)
    criterion = build_criterion(LossWeights())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    losses = []
    for _ in range(40):  # the tiny presets' 32x32 masks leave the first plateau after about 25 steps
        total, _ = forward_and_loss(model, batch, criterion)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        losses.append(total.item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.5 * losses[0], losses
    assert min(losses[-5:]) < 0.9 * min(losses[2:10]), losses  # still learning after the first drop


def test_without_the_presence_head_no_presence_loss_and_every_query_is_classified(
    records: list[MediaRecord],
) -> None:
    """TrainConfig.presence_head off: the official loss as trained without a presence head."""
    batch = _batch(records)
    terms = {}
    for presence in (True, False):
        torch.manual_seed(0)
        model = build_model("tiny112").train()
        total, terms[presence] = forward_and_loss(
            model, batch, build_criterion(LossWeights(), presence=presence)
        )
        assert math.isfinite(total.item())
    assert terms[True]["presence_loss"] > 0 and terms[False]["presence_loss"] == 0
    assert terms[False]["loss_ce"] != pytest.approx(terms[True]["loss_ce"])  # negatives' queries now count
