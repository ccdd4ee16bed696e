"""The import graph of `components/` and `pipeline/`, read from the source: no cycles, and the library
(`components/`) never reaches up into `pipeline/` or into `kfp` outside its KFP wrappers.

Every import statement counts, at module level and inside functions alike: an import deferred into a
function still makes the two modules depend on each other, and hiding a cycle that way is what this test
is for. Only imports under ``if TYPE_CHECKING:`` are left out (they never run). Importing ``a.b.c`` also
runs the ``__init__`` of ``a`` and ``a.b``, so those count too, except the importer's own packages (a
package's modules importing each other through their package is not a cycle anyone can break).
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("components", "pipeline")

# Cycles that are known and not broken yet, each as the set of its modules or packages; the test fails
# on any other cycle, and on a known one that is gone (so these lists only shrink).
KNOWN_CYCLES: list[frozenset[str]] = []
KNOWN_PACKAGE_CYCLES: list[frozenset[str]] = [
    # gate -> promote (the production model card, in a function of gate.policy), promote -> gate
    # (stage_metrics), report -> gate and promote, gate.component -> report (gate_key): the store keys
    # and the metrics.json reader need a home of their own (issue 20, items 1 and 3), not yet done.
    frozenset({"components.gate", "components.promote", "components.report"}),
    # train -> evaluate (stage 0's in-training recognition AUC, in functions of the trainer), evaluate ->
    # train (checkpoints, the training history, TrainConfig): the checkpoint store and history belong
    # beside the store layout rather than in train/; not yet done.
    frozenset({"components.evaluate", "components.train"}),
]


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the imported module (a module of ours, or the first name of a third-party one)
    line: int
    module_level: bool


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _statements(tree: ast.Module) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement that can run, with whether it runs when the module is imported."""

    def walk(node: ast.AST, module_level: bool) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                yield child, module_level
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                for orelse in child.orelse:
                    yield from walk(ast.Module(body=[orelse], type_ignores=[]), module_level)
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                yield from walk(child, False)
            else:  # a class body, try / with / if blocks run at import time when the module's code does
                yield from walk(child, module_level)

    yield from walk(tree, True)


def imports(name: str, path: Path, known: set[str]) -> Iterator[Import]:
    is_package = path.name == "__init__.py"
    for node, module_level in _statements(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:  # relative: from the importer's package, up level - 1 packages
                package = name.split(".") if is_package else name.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join([*package, *([base] if base else [])])
            # `from pkg import mod` imports the module pkg.mod; `from mod import name` only mod
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        for target in targets:
            if target.split(".")[0] not in PACKAGES:
                yield Import(name, target.split(".")[0], node.lineno, module_level)
                continue
            while target not in known:  # `import a.b.name`: the module is a.b
                target = target.rpartition(".")[0]
            parts = target.split(".")
            for i in range(1, len(parts) + 1):  # the target and the packages whose __init__ it runs
                runs = ".".join(parts[:i])
                if runs != name and not name.startswith(runs + "."):
                    yield Import(name, runs, node.lineno, module_level)


def import_graph() -> tuple[dict[str, set[str]], list[Import]]:
    found = modules()
    known = set(found)
    edges: list[Import] = [e for name, path in found.items() for e in imports(name, path, known)]
    graph: dict[str, set[str]] = {name: set() for name in found}
    for e in edges:
        if e.target in known:
            graph[e.source].add(e.target)
    return graph, edges


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components with more than one module (Tarjan), each one import cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                found.append(frozenset(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def unit(module: str) -> str:
    """The package a module belongs to for the package graph: ``components.gate.policy`` ->
    ``components.gate``; a top-level module (``components.storage``) is its own unit."""
    return ".".join(module.split(".")[:2])


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    units: dict[str, set[str]] = {}
    for source, targets in graph.items():
        units.setdefault(unit(source), set()).update(unit(t) for t in targets if unit(t) != unit(source))
    return units


def _describe(cycle: frozenset[str], edges: list[Import], of: Callable[[str], str] = str) -> str:
    """The imports that make up a cycle, one line each (a module, not the packages it runs)."""
    inside = {
        (e.source, e.line): e  # the last edge of a statement is its deepest module
        for e in sorted(edges, key=lambda e: (e.source, e.line, len(e.target)))
        if of(e.source) in cycle and of(e.target) in cycle and of(e.source) != of(e.target)
    }
    lines = [
        f"  {e.source} -> {e.target} (line {e.line}{'' if e.module_level else ', in a function'})"
        for e in inside.values()
    ]
    return "cycle among " + ", ".join(sorted(cycle)) + ":\n" + "\n".join(lines)


def test_the_graph_is_read_from_the_source() -> None:
    """A check of the checker: the graph has the project's modules and some of their known imports."""
    graph, edges = import_graph()
    assert {"components.storage", "pipeline.cli", "pipeline.dag", "components.train.trainer"} <= set(graph)
    assert "components.errors" in graph["components.storage"]
    assert any(e.source == "pipeline.cli" and e.target == "typer" and e.module_level for e in edges)
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [frozenset("abc")]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles() -> None:
    graph, edges = import_graph()
    found = set(cycles(graph))
    new = [c for c in found if c not in KNOWN_CYCLES]
    gone = [c for c in KNOWN_CYCLES if c not in found]
    assert not new, "import cycles:\n" + "\n".join(_describe(c, edges) for c in new)
    assert not gone, f"known cycles that are gone: remove them from KNOWN_CYCLES: {gone}"


def test_no_import_cycles_between_packages() -> None:
    """Packages (`components.gate`, `components.promote`, ...) depend on each other one way only: a
    package is a unit a reader learns, and two that need each other are one unit in two folders."""
    graph, edges = import_graph()
    found = set(cycles(package_graph(graph)))
    new = [c for c in found if c not in KNOWN_PACKAGE_CYCLES]
    gone = [c for c in KNOWN_PACKAGE_CYCLES if c not in found]
    assert not new, "import cycles between packages:\n" + "\n".join(_describe(c, edges, unit) for c in new)
    assert not gone, f"known cycles that are gone: remove them from KNOWN_PACKAGE_CYCLES: {gone}"


@pytest.mark.parametrize("forbidden", ["pipeline", "kfp"])
def test_the_library_does_not_import_the_pipeline_or_kfp(forbidden: str) -> None:
    """`components/` is the library the pipeline calls: it never imports `pipeline`, and only the KFP
    wrappers (`components/<step>/component.py`) import `kfp`, at module level as a component must."""
    _, edges = import_graph()
    wrong = [
        e
        for e in edges
        if e.source.startswith("components")
        and e.target.split(".")[0] == forbidden
        and not (forbidden == "kfp" and e.source.endswith(".component"))
    ]
    assert not wrong, "\n".join(f"{e.source} imports {e.target} (line {e.line})" for e in wrong)
