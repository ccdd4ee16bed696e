"""The synthetic concept graph: shapes with optional size, texture and colour.

A concept is a shape plus any subset of {size, texture, colour}; its noun
phrase orders the words as size, texture, colour, shape ("small striped red
circle", "red circle", "circle"). Its parents drop exactly one non-shape
attribute, so the bare shapes are the roots. 4 shapes x 7 colour choices x
3 size choices x 3 texture choices = 252 concepts.

A scene object always carries all four attributes; it is an instance of every
concept whose attributes it matches (8 concepts per object).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping

from components.ontology import Concept, Ontology

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond")
COLOURS: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "orange")
SIZES: tuple[str, ...] = ("small", "large")
TEXTURES: tuple[str, ...] = ("solid", "striped")

ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "shape": SHAPES,
    "colour": COLOURS,
    "size": SIZES,
    "texture": TEXTURES,
}
OPTIONAL = ("size", "texture", "colour")
"""The attributes a concept may leave out, in noun-phrase word order (shape comes last)."""

Attributes = Mapping[str, str]


def noun_phrase(attributes: Attributes) -> str:
    """The phrase for a concept: size, texture, colour, shape, omitting what is absent."""
    words = [attributes[a] for a in OPTIONAL if a in attributes]
    return " ".join([*words, attributes["shape"]])


def matches(concept: Attributes, obj: Attributes) -> bool:
    """Whether an object with attributes ``obj`` is an instance of ``concept``."""
    return all(obj.get(k) == v for k, v in concept.items())


def generalisations(obj: Attributes) -> list[dict[str, str]]:
    """Every concept an object instantiates: its shape with each subset of its other attributes."""
    out = []
    for keep in itertools.product((False, True), repeat=len(OPTIONAL)):
        concept = {"shape": obj["shape"]}
        concept.update({a: obj[a] for a, k in zip(OPTIONAL, keep, strict=True) if k})
        out.append(concept)
    return out


def one_value_away(concept: Attributes) -> list[dict[str, str]]:
    """Concepts with the same attribute names and exactly one value changed (shape included).

    For a concept with a non-shape attribute these are, shape swaps aside, its
    ontology siblings of equal specificity ("small blue circle" for "small red
    circle"): the hard negatives.
    """
    out = []
    for name in sorted(concept):
        for value in ATTRIBUTES[name]:
            if value != concept[name]:
                out.append({**concept, name: value})
    return out


def _parents(attributes: Attributes) -> tuple[str, ...]:
    drops = [a for a in OPTIONAL if a in attributes]
    return tuple(noun_phrase({k: v for k, v in attributes.items() if k != a}) for a in drops)


def all_concepts() -> list[dict[str, str]]:
    """Every concept's attributes, the general ones first (so parents precede children)."""
    concepts: list[tuple[int, dict[str, str]]] = []
    choices = [(None, *ATTRIBUTES[a]) for a in OPTIONAL]
    for shape in SHAPES:
        for values in itertools.product(*choices):
            attrs = {"shape": shape}
            attrs.update({a: v for a, v in zip(OPTIONAL, values, strict=True) if v is not None})
            concepts.append((len(attrs), attrs))
    # stable sort: by specificity, then shape, then size / texture / colour in declaration order
    concepts.sort(key=lambda item: item[0])
    return [attrs for _, attrs in concepts]


def build_ontology() -> Ontology:
    """The full synthetic ontology (252 concepts); a concept's category id is its index + 1."""
    concepts = tuple(
        Concept(name=noun_phrase(attrs), parents=_parents(attrs), attributes=dict(attrs))
        for attrs in all_concepts()
    )
    return Ontology(attributes={k: list(v) for k, v in ATTRIBUTES.items()}, concepts=concepts)


def category_ids(ontology: Ontology) -> dict[str, int]:
    """Noun phrase -> category id (the concept's index in the ontology + 1)."""
    return {c.name: i + 1 for i, c in enumerate(ontology.concepts)}
