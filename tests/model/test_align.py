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
    logits, local = build_alignment_model("tiny112").score(images, ["red circle", "square", "blue diamond"])
    assert logits.shape == (2, 3) and local.shape == (2, 3, GRID, GRID)
