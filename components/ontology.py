"""The concept ontology that hard negatives are mined from.

``ontology.json`` is a concept graph: each concept is a noun phrase with its
parents (more general concepts) and, optionally, attributes. An image that
shows a concept also shows every ancestor of it ("small red circle" implies
"red circle" and "circle"), so an ancestor of a present concept is never a
negative.
"""

from __future__ import annotations

import json
from collections import deque
from functools import cached_property
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from components.errors import DataError


class Concept(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, description="the noun phrase")
    parents: tuple[str, ...] = ()
    attributes: dict[str, str] = Field(default_factory=dict)


class Ontology(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = 1
    attributes: dict[str, list[str]] = Field(
        default_factory=dict, description="attribute name -> its values, e.g. colour -> [red, ...]"
    )
    concepts: tuple[Concept, ...]

    @model_validator(mode="after")
    def _check_graph(self) -> Ontology:
        names = [c.name for c in self.concepts]
        seen: set[str] = set()
        for name in names:
            if name in seen:
                raise ValueError(f"duplicate concept {name!r}")
            seen.add(name)
        for c in self.concepts:
            unknown = [p for p in c.parents if p not in seen]
            if unknown:
                raise ValueError(f"concept {c.name!r} has unknown parents {unknown}")
        # acyclic: Kahn's algorithm over child -> parent edges
        indegree = {c.name: len(c.parents) for c in self.concepts}
        children: dict[str, list[str]] = {n: [] for n in names}
        for c in self.concepts:
            for p in c.parents:
                children[p].append(c.name)
        queue = deque(n for n, d in indegree.items() if d == 0)
        visited = 0
        while queue:
            n = queue.popleft()
            visited += 1
            for ch in children[n]:
                indegree[ch] -= 1
                if indegree[ch] == 0:
                    queue.append(ch)
        if visited != len(names):
            raise ValueError("the concept graph has a cycle")
        return self

    @classmethod
    def load(cls, path: Path) -> Ontology:
        try:
            return cls.model_validate_json(Path(path).read_bytes())
        except FileNotFoundError:
            raise DataError(f"{path}: ontology file not found") from None
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(x) for x in first["loc"])
            raise DataError(f"{path}: invalid ontology at {loc or '<root>'}: {first['msg']}") from None

    def dump(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.model_dump(mode="json"), indent=1, sort_keys=True) + "\n")

    # -- graph queries ------------------------------------------------------
    @cached_property
    def by_name(self) -> dict[str, Concept]:
        return {c.name: c for c in self.concepts}

    @cached_property
    def children(self) -> dict[str, tuple[str, ...]]:
        out: dict[str, list[str]] = {c.name: [] for c in self.concepts}
        for c in self.concepts:
            for p in c.parents:
                out[p].append(c.name)
        return {k: tuple(v) for k, v in out.items()}

    def ancestors(self, name: str) -> frozenset[str]:
        """Every strictly more general concept."""
        return self._closure(name, lambda n: self.by_name[n].parents)

    def descendants(self, name: str) -> frozenset[str]:
        """Every strictly more specific concept."""
        return self._closure(name, lambda n: self.children[n])

    def siblings(self, name: str) -> frozenset[str]:
        """Concepts sharing a parent with ``name`` (not itself)."""
        out: set[str] = set()
        for p in self.by_name[name].parents:
            out.update(self.children[p])
        out.discard(name)
        return frozenset(out)

    def _closure(self, name: str, step: object) -> frozenset[str]:
        if name not in self.by_name:
            return frozenset()
        assert callable(step)
        out: set[str] = set()
        todo = list(step(name))
        while todo:
            n = todo.pop()
            if n not in out:
                out.add(n)
                todo.extend(step(n))
        return frozenset(out)
