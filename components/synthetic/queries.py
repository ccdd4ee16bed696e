"""Which noun phrases to ask about a scene: positives at several specificities and negatives.

Every query is exhaustive: its instances are all the scene objects matching the
concept. A negative is built from a *template*, one of the scene's positive
concepts, so negatives have the same specificity (word count) distribution as
positives and the phrase alone says nothing about the answer:

- a hard negative changes exactly one attribute value of the template
  ("small blue circle" next to a "small red circle"), so a model that ignores
  that attribute answers it wrongly;
- an easy negative draws fresh values for all of the template's attributes and
  differs from every object in at least two of them.

When no negative of the wanted kind exists (a bare-shape template has no easy
negative) the other kind is used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from components.synthetic.ontology import (
    ATTRIBUTES,
    Attributes,
    generalisations,
    matches,
    noun_phrase,
    one_value_away,
)

_MAX_TRIES = 32


@dataclass(frozen=True)
class Query:
    """One (media, noun phrase) pair; ``instances`` index the scene's objects (empty = negative)."""

    noun_phrase: str
    attributes: dict[str, str]
    instances: tuple[int, ...]
    hard_negative: bool = False

    @property
    def positive(self) -> bool:
        return bool(self.instances)


def instances_of(concept: Attributes, objects: Sequence[Attributes]) -> tuple[int, ...]:
    """Indices of every object that is an instance of ``concept``."""
    return tuple(i for i, obj in enumerate(objects) if matches(concept, obj))


def present_concepts(objects: Sequence[Attributes]) -> list[dict[str, str]]:
    """Every concept with at least one instance, deduplicated, in a deterministic order."""
    seen: dict[str, dict[str, str]] = {}
    for obj in objects:
        for concept in generalisations(obj):
            seen.setdefault(noun_phrase(concept), concept)
    return list(seen.values())


def train_queries(rng: np.random.Generator, objects: Sequence[Attributes]) -> list[Query]:
    """Each object's full phrase, a sample of coarser present phrases, and 1-3 negatives."""
    full = {noun_phrase(o): dict(o) for o in objects}
    coarser = [c for c in present_concepts(objects) if noun_phrase(c) not in full]
    k = min(len(coarser), int(rng.integers(1, len(objects) + 1)))
    picked = [coarser[i] for i in sorted(rng.choice(len(coarser), size=k, replace=False))]
    positives = [*full.values(), *picked]
    n_neg = int(rng.integers(1, 4))
    hard = [bool(rng.random() < 0.5) for _ in range(n_neg)]
    return _assemble(rng, objects, positives, hard)


def gold_queries(rng: np.random.Generator, objects: Sequence[Attributes]) -> list[Query]:
    """3-8 positives drawn from all specificities and as many negatives, half of them hard."""
    present = present_concepts(objects)
    k = min(len(present), int(rng.integers(3, 9)))
    positives = [present[i] for i in sorted(rng.choice(len(present), size=k, replace=False))]
    n_hard = k // 2 + int(k % 2 == 1 and rng.random() < 0.5)
    hard = [i < n_hard for i in range(k)]
    return _assemble(rng, objects, positives, hard)


def _assemble(
    rng: np.random.Generator,
    objects: Sequence[Attributes],
    positives: Sequence[dict[str, str]],
    hard: Sequence[bool],
) -> list[Query]:
    """The positive queries plus one negative per entry of ``hard``, in a random order.

    Negative ``i`` is modelled on the ``i``-th positive of a random permutation
    (gold has as many negatives as positives, so each positive is used once);
    only if no absent concept of its form exists is another positive tried.
    """
    queries = [Query(noun_phrase(c), dict(c), instances_of(c, objects)) for c in positives]
    used = {q.noun_phrase for q in queries}
    preferred = rng.permutation(len(positives))
    for i, want_hard in enumerate(hard):
        first = int(preferred[i % len(positives)])
        others = [int(j) for j in rng.permutation(len(positives)) if j != first]
        for j in [first, *others]:
            negative = _negative_like(rng, positives[j], objects, want_hard, used)
            if negative is not None:
                used.add(negative.noun_phrase)
                queries.append(negative)
                break
    order = rng.permutation(len(queries))
    return [queries[i] for i in order]


def _negative_like(
    rng: np.random.Generator,
    template: dict[str, str],
    objects: Sequence[Attributes],
    hard: bool,
    used: set[str],
) -> Query | None:
    """An unused absent concept with the template's attribute names; the other kind if none of ``hard``'s."""
    for kind in (hard, not hard):
        if kind:
            options = [
                c
                for c in one_value_away(template)
                if noun_phrase(c) not in used and not instances_of(c, objects)
            ]
        else:
            options = []
            for _ in range(_MAX_TRIES):
                candidate = {
                    k: ATTRIBUTES[k][int(rng.integers(len(ATTRIBUTES[k])))] for k in sorted(template)
                }
                if noun_phrase(candidate) in used or instances_of(candidate, objects):
                    continue
                if not is_hard_negative(candidate, objects):  # an easy one must really be easy
                    options.append(candidate)
                    break
        if options:
            chosen = options[int(rng.integers(len(options)))]
            return Query(noun_phrase(chosen), chosen, (), hard_negative=kind)
    return None


def is_hard_negative(concept: Attributes, objects: Sequence[Attributes]) -> bool:
    """Whether an absent ``concept`` is one attribute value away from some object (on its own attributes)."""
    return any(sum(obj.get(k) != v for k, v in concept.items()) == 1 for obj in objects)
