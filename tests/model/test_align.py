"""Stage 0: the labels it derives from the data and the ontology, its loss, and its model's keys."""

from __future__ import annotations

import copy

import pytest
import torch

from components.errors import DataError
from components.model.align import alignment_loss, build_alignment_model
from components.model.align_batch import (
    AlignBatch,
    instance_attributes,
    pair_answers,
    records_to_align_batch,
)
from components.model.builder import build_model
from components.schemas import MediaRecord
from components.synthetic.ontology import build_ontology
from tests.model.records import synthetic_record

GRID = 16


@pytest.fixture(scope="module")
def images() -> list[MediaRecord]:
    return [synthetic_record(i, size=112) for i in range(4)]


def test_the_ontology_closes_the_answers(images: list[MediaRecord]) -> None:
    ontology = build_ontology()
    for record, (present, absent) in zip(images, pair_answers(images, ontology), strict=True):
        queried = {q.noun_phrase: q.positive for q in record.queries}
        assert {p for p, yes in queried.items() if yes} <= present
        assert {p for p, yes in queried.items() if not yes} <= absent
        assert not present & absent
        for phrase in [p for p, yes in queried.items() if yes]:
            assert ontology.ancestors(phrase) <= present  # "small red circle" shows a "circle"
        for phrase in [p for p, yes in queried.items() if not yes]:
            assert ontology.descendants(phrase) <= absent
    bare = pair_answers(images)  # without an ontology: the queried pairs alone
    assert [p for p, _ in bare] == [frozenset(q.noun_phrase for q in r.queries if q.positive) for r in images]


def test_cells_are_labelled_by_what_each_instance_is(images: list[MediaRecord]) -> None:
    ontology = build_ontology()
    batch = records_to_align_batch(images, resolution=112, grid=GRID, ontology=ontology)
    column = {p: j for j, p in enumerate(batch.phrases)}
    assert batch.images.shape == (4, 3, 112, 112) and batch.where.shape == (4, len(column), GRID, GRID)
    for i, record in enumerate(images):
        things = instance_attributes(record, ontology)
        assert things and all(set(a) == {"shape", "colour", "size", "texture"} for a in things.values())
        shapes = {a["shape"] for a in things.values()}
        for shape in ("circle", "square", "triangle", "diamond"):
            if shape not in column:
                continue
            j = column[shape]
            assert float(batch.where_weight[i, j].sum()) > 0  # every instance tells whether it is one
            assert (batch.where[i, j].sum() > 0) == (shape in shapes)
        for query in record.queries:
            j = column[query.noun_phrase]
            if not query.positive:  # absent: no cell shows it, and every cell says so
                assert batch.where[i, j].sum() == 0 and bool((batch.where_weight[i, j] == 1).all())
            elif query.exhaustive:  # listed exhaustively: its instances' cells, and nothing else
                assert batch.where[i, j].sum() > 0 and bool((batch.where_weight[i, j] == 1).all())


def test_instances_are_labelled_by_what_each_is(images: list[MediaRecord]) -> None:
    ontology = build_ontology()
    batch = records_to_align_batch(images, resolution=112, grid=GRID, ontology=ontology)
    things = [instance_attributes(r, ontology) for r in images]
    assert len(batch.instance_image) == sum(len(t) for t in things)
    assert batch.instance_cover.shape == (len(batch.instance_image), GRID, GRID)
    assert bool((batch.instance_cover.flatten(1).sum(1) > 0).all())
    per_phrase = (len(batch.instance_image), len(batch.phrases))
    assert batch.instance_labels.shape == batch.instance_known.shape == per_phrase
    column = {p: j for j, p in enumerate(batch.phrases)}
    for n, i in enumerate(batch.instance_image.tolist()):
        # an instance is one of exactly one bare shape, and each bare shape is known for it
        shapes = [s for s in ("circle", "square", "triangle", "diamond") if s in column]
        labels = [float(batch.instance_labels[n, column[s]]) for s in shapes]
        assert all(bool(batch.instance_known[n, column[s]]) for s in shapes)
        assert sum(labels) <= 1
        # its cells show, per phrase, what the instance is where the cell is mostly this instance
        inside = batch.instance_cover[n] > 0.99
        for j in range(len(batch.phrases)):
            if batch.instance_known[n, j] and batch.instance_labels[n, j] == 1:
                assert bool((batch.where[i, j][inside] > 0.99).all())
    without = records_to_align_batch(images, resolution=112, grid=GRID)  # no ontology: no instance tells
    assert len(without.instance_image) == 0 and without.instance_labels.shape == (0, len(without.phrases))


def test_the_instance_term_pools_each_instances_cells() -> None:
    torch.manual_seed(0)
    model = build_alignment_model("tiny112")
    images = torch.randn(2, 3, 112, 112)
    cover = torch.zeros(3, GRID, GRID)
    cover[0, :4, :4] = 1.0
    cover[1, 8:, 8:] = 0.5
    cover[2] = 1.0
    owner = torch.tensor([0, 1, 1])
    scores = model.score(images, ["red circle", "square"], (cover, owner))
    assert scores.instance is not None and scores.instance.shape == (3, 2)
    # the same instance alone, or with its image duplicated, scores the same
    alone = model.score(images[1:], ["red circle", "square"], (cover[1:2], torch.tensor([0])))
    assert alone.instance is not None
    torch.testing.assert_close(alone.instance[0], scores.instance[1])
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    known = torch.tensor([[True, True], [True, False], [True, True]])
    batch = _batch([[1.0, 0.0], [0.0, 1.0]], [[True, True], [True, True]])
    batch.instance_cover, batch.instance_image = cover, owner
    batch.instance_labels, batch.instance_known = labels, known
    logits = scores.instance.detach().requires_grad_(True)
    loss, terms = alignment_loss(scores.pair, scores.local, batch, 0.0, 0.0, logits, 1.0)
    loss.backward()
    assert set(terms) == {"align_pair", "align_instance", "align_acc"}
    assert logits.grad is not None
    assert logits.grad[0, 0] < 0 < logits.grad[0, 1]  # instance 0 is a "red circle", not a "square"
    assert logits.grad[1, 1] == 0  # unknown: left out
    with pytest.raises(ValueError, match="per-instance logits"):
        alignment_loss(scores.pair, scores.local, batch, local_weight=0.0, instance_weight=1.0)


def test_without_an_ontology_only_queried_pairs_count(images: list[MediaRecord]) -> None:
    batch = records_to_align_batch(images, resolution=112, grid=GRID)
    queried = {(i, q.noun_phrase) for i, r in enumerate(images) for q in r.queries}
    known = {(i, batch.phrases[j]) for i, j in batch.known.nonzero().tolist()}
    assert known == queried
    videos_only = copy.deepcopy(images[:1])
    videos_only[0].kind = "video"
    with pytest.raises(DataError, match="no image"):
        records_to_align_batch(videos_only, resolution=112, grid=GRID)


def _batch(labels: list[list[float]], known: list[list[bool]]) -> AlignBatch:
    b, p = len(labels), len(labels[0])
    return AlignBatch(
        torch.zeros(b, 3, 8, 8),
        [f"p{j}" for j in range(p)],
        torch.tensor(labels),
        torch.tensor(known),
        torch.zeros(b, p, 2, 2),
        torch.zeros(b, p, 2, 2),
        [f"m{i}" for i in range(b)],
    )


def test_the_pair_loss_ranks_images_per_phrase_and_skips_one_sided_phrases() -> None:
    # phrase 0 is present in both images (nothing to rank), phrase 1 in one of them
    batch = _batch([[1.0, 1.0], [1.0, 0.0]], [[True, True], [True, True]])
    logits = torch.zeros(2, 2, requires_grad=True)
    loss, terms = alignment_loss(logits, torch.zeros(2, 2, 2, 2), batch, local_weight=0.0)
    loss.backward()
    assert logits.grad is not None
    assert torch.all(logits.grad[:, 0] == 0)  # no prior is taught for phrase 0
    assert logits.grad[0, 1] < 0 < logits.grad[1, 1]  # phrase 1: up where present, down where absent
    assert set(terms) == {"align_pair", "align_acc"}
    one_sided = _batch([[1.0], [1.0]], [[True], [True]])
    zero, _ = alignment_loss(torch.zeros(2, 1, requires_grad=True), torch.zeros(2, 1, 2, 2), one_sided)
    assert float(zero) == 0.0


def test_the_alignment_model_carries_the_detectors_backbone_keys() -> None:
    aligned = {k for k in build_alignment_model("tiny112").state_dict() if k.startswith("backbone.")}
    detector = {k for k in build_model("tiny112").state_dict() if k.startswith("backbone.")}
    assert aligned == detector
    images = torch.zeros(2, 3, 112, 112)
    scores = build_alignment_model("tiny112").score(images, ["red circle", "square", "blue diamond"])
    assert scores.pair.shape == (2, 3) and scores.local.shape == (2, 3, GRID, GRID)
    assert scores.instance is None


def test_the_stage_trains_the_instance_term_only_when_its_weight_is_set(images: list[MediaRecord]) -> None:
    from components.model.loss import Criteria, forward_and_loss
    from components.model.settings import AlignLossWeights

    torch.manual_seed(0)
    model = build_alignment_model("tiny112")
    batch = records_to_align_batch(images, resolution=112, grid=GRID, ontology=build_ontology())
    criterion = torch.nn.Identity()  # stage 0 has no image criterion
    _, default = forward_and_loss(model, batch, Criteria(criterion, align=AlignLossWeights()))
    assert "align_instance" not in default  # off unless a config sets it
    total, terms = forward_and_loss(model, batch, Criteria(criterion, align=AlignLossWeights(instance=2.0)))
    assert terms["align_instance"] > 0
    assert terms["total"] == pytest.approx(default["total"] + 2.0 * terms["align_instance"], rel=1e-4)
    total.backward()
    assert model.align.instance_bias.grad is not None  # the term reaches the loss's graph


def test_a_stage0_checkpoint_from_before_the_instance_term_still_loads() -> None:
    from components.errors import DataError
    from components.model.checkpoint import load_weights

    saved = build_alignment_model("tiny112").state_dict()
    old = {k: v for k, v in saved.items() if k != "align.instance_bias"}
    model = build_alignment_model("tiny112")
    load_weights(model, old, "old.safetensors")  # every other key must still match
    assert float(model.align.instance_bias) == -1.0
    torch.testing.assert_close(model.align.local_bias, saved["align.local_bias"])
    with pytest.raises(DataError, match="does not fit"):  # any other missing key is still refused
        load_weights(model, {k: v for k, v in old.items() if k != "align.local_bias"}, "bad.safetensors")
