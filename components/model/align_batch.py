"""Stage 0's batches: images, the noun phrases the data answers for them, and the labels.

Per (image, phrase) pair: present or absent, from the image's queries closed
under the concept ontology. Per (image, phrase, feature cell): whether the cell
shows the phrase, from the instances' masks and from what the data says each
instance is. Per (instance, phrase): whether the instance is one of the phrase,
from what the data says it is. What the data does not tell stays unknown
(weight 0): the loss (components.model.align.alignment_loss) leaves it out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from components.model.batch import TensorBatch, decode_image


@dataclass
class AlignBatch(TensorBatch):
    """Images, the batch's phrases, per pair a label and whether it is known, and per pair and feature
    cell what the data says there: ``where`` (the share of the cell showing the phrase) counts with weight
    ``where_weight`` (0 where the data does not tell); per instance whose attributes the data tells, where
    it lies on the feature grid (``instance_cover``, the share of each cell it covers), its image
    (``instance_image``), and per phrase whether it is one (``instance_labels``, known where
    ``instance_known``)."""

    images: torch.Tensor  # (B, 3, R, R)
    phrases: list[str]
    labels: torch.Tensor  # (B, P) float 0/1
    known: torch.Tensor  # (B, P) bool
    where: torch.Tensor  # (B, P, h, w) float in [0, 1]
    where_weight: torch.Tensor  # (B, P, h, w) float in [0, 1]
    media_ids: list[str]
    # per instance (N of them): (N, h, w) cover, (N,) image index, (N, P) float 0/1 labels, (N, P) bool known
    instance_cover: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 1, 1))
    instance_image: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    instance_labels: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 0))
    instance_known: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 0, dtype=torch.bool))

    @property
    def num_images(self) -> int:
        return len(self.media_ids)


def pair_answers(
    records: list[Any], ontology: Any | None = None
) -> list[tuple[frozenset[str], frozenset[str]]]:
    """Per image record, (present phrases, absent phrases) as its queries and the ontology tell.

    A queried positive is present, a queried negative absent; with an ``ontology``
    (components.ontology.Ontology), every ancestor of a present concept is
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

    Per instance (those whose attributes the data tells), the same answers once for the whole instance:
    the loss then scores the instance's features pooled over its cells, so no single cell has to tell a
    shape from the fragment of the outline it sees.
    """
    from components.errors import DataError

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
    covers: list[np.ndarray] = []
    owners: list[int] = []
    instance_labels: list[np.ndarray] = []
    instance_known: list[np.ndarray] = []
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
            for k in range(len(objects)):
                if stack[k].sum() > 0 and decided[:, k].any():
                    covers.append(stack[k])
                    owners.append(i)
                    instance_labels.append(matched[:, k])
                    instance_known.append(decided[:, k] > 0)
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
        torch.from_numpy(np.stack(covers) if covers else np.zeros((0, grid, grid), np.float32)),
        torch.tensor(owners, dtype=torch.long),
        torch.from_numpy(np.stack(instance_labels) if covers else np.zeros((0, len(phrases)), np.float32)),
        torch.from_numpy(np.stack(instance_known) if covers else np.zeros((0, len(phrases)), bool)),
    )
