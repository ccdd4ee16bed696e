"""Choose hard negative noun phrases for one image from the ontology.

A candidate is a concept absent from the image, closest first. What counts
as present: the noun phrases of the image's positive queries. Never chosen:
a present concept, an ancestor of one (implied present), a descendant of
one (it may well be present: a "circle" could be the unqueried "red
circle"), or a phrase the image already has a query for. Closeness: a
sibling of a present concept first, then the number of attribute values
shared with a present concept, then a per-image hash so that ties spread
over the ontology instead of always taking the same names.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property

from components.ontology import Ontology


@dataclass
class NegativeMiner:
    ontology: Ontology

    @cached_property
    def _attrs(self) -> dict[str, frozenset[tuple[str, str]]]:
        return {c.name: frozenset(c.attributes.items()) for c in self.ontology.concepts}

    def excluded(self, present: set[str]) -> set[str]:
        out = set(present)
        for name in present:
            out |= self.ontology.ancestors(name)
            out |= self.ontology.descendants(name)
        return out

    def choose(self, media_id: str, positives: set[str], existing: set[str], k: int) -> list[str]:
        """Up to ``k`` hard negatives for one image, closest first."""
        if k <= 0:
            return []
        present = {p for p in positives if p in self.ontology.by_name}
        blocked = self.excluded(present) | set(existing) | set(positives)
        siblings: set[str] = set()
        for name in present:
            siblings |= self.ontology.siblings(name)
        present_attrs = [self._attrs[p] for p in present]

        def closeness(name: str) -> tuple[int, int, str]:
            shared = max((len(self._attrs[name] & a) for a in present_attrs), default=0)
            tie = hashlib.blake2b(f"{media_id}\0{name}".encode(), digest_size=8).hexdigest()
            return (0 if name in siblings else 1, -shared, tie)

        candidates = [c.name for c in self.ontology.concepts if c.name not in blocked]
        candidates.sort(key=closeness)
        return candidates[:k]
