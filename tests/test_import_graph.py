"""The model code holds no I/O: ``fpn_zoo.detector`` never imports weights loading, publishing or the factory.

Loading, exporting and publishing call the model; the model does not call them (STYLE.md, rule 12). The checks read
the sources with ``ast`` instead of importing anything, so they are fast and see deferred imports (inside functions)
as well as module-level ones; imports under ``if TYPE_CHECKING:`` are annotations only and do not count.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "fpn_zoo"
MODEL = "fpn_zoo.detector"
# Above the model: they call it, it must not call them.
IO_LAYERS = ("fpn_zoo.weights", "fpn_zoo.publish", "fpn_zoo.factory")
IO_LIBRARIES = ("huggingface_hub", "safetensors")


@dataclass(frozen=True)
class Edge:
    """One import statement's target, as seen from the importing module."""

    target: str  # an fpn_zoo module, or the top-level name of another distribution
    deferred: bool = False  # inside a function: runs when called, not when the module is imported
    uses_code: bool = True  # False for `from M import CONSTANT`: M is loaded, none of its functions run


@cache
def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name, for its ``__init__.py``)."""
    found = {}
    for path in PACKAGE_DIR.rglob("*.py"):
        parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


@cache
def _tree(module: str) -> ast.Module:
    return ast.parse(modules()[module].read_text(), filename=str(modules()[module]))


@cache
def _constants(module: str) -> frozenset[str]:
    """Names a module binds only by assignment at module level (``__version__ = ...``): data, not code."""
    assigned, other = set(), set()
    for node in _tree(module).body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            assigned.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            other.add(node.name)
    return frozenset(assigned - other)


def _statements(body: Iterable[ast.stmt], deferred: bool) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, deferred
        elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from _statements(node.orelse, deferred)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield from _statements(node.body, True)
        else:  # class bodies, if/try/with blocks: run when the enclosing code runs
            for field in ("body", "orelse", "finalbody", "handlers"):
                yield from _statements(getattr(node, field, []), deferred)


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> Iterator[tuple[str, bool]]:
    """(module imported, whether code of it is used) for one import statement."""
    if isinstance(node, ast.Import):
        yield from ((alias.name, True) for alias in node.names)
        return
    base = node.module or ""
    if node.level:  # relative: from the module's package
        package = module.split(".") if modules()[module].name == "__init__.py" else module.split(".")[:-1]
        base = ".".join([*package[: len(package) - node.level + 1], *([base] if base else [])])
    names = []
    for alias in node.names:
        if f"{base}.{alias.name}" in modules():
            yield f"{base}.{alias.name}", True
        else:
            names.append(alias.name)
    if names:
        yield base, base not in modules() or not set(names) <= _constants(base)


@cache
def edges(module: str) -> tuple[Edge, ...]:
    """The imports of one module: fpn_zoo modules by name, other distributions by their top-level name."""
    found = []
    for node, deferred in _statements(_tree(module).body, False):
        for target, uses_code in _targets(module, node):
            while target not in modules() and target.startswith("fpn_zoo."):  # `import fpn_zoo.mod.name`
                target = target.rpartition(".")[0]
            if not target.startswith("fpn_zoo"):
                target = target.partition(".")[0]
            if target != module:
                found.append(Edge(target, deferred, uses_code))
    return tuple(found)


def _parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _walk(start: str, *, called: bool) -> dict[str, list[str]]:
    """Every module ``start`` may import, each with one import path to it.

    A module whose code may run (``called``: imported by name for its functions or classes) counts all its
    imports, deferred ones too. A module that is only loaded (a parent package, run because a submodule is
    imported; a module imported for a constant) counts its module-level imports alone, and so do the modules those
    load.
    """
    paths: dict[tuple[str, bool], list[str]] = {(start, called): [start]}
    todo = [(start, called)]
    while todo:
        module, runs = state = todo.pop(0)
        if module not in modules():
            continue
        following = [(parent, False) for parent in _parents(module)]
        following += [(edge.target, runs and edge.uses_code) for edge in edges(module) if runs or not edge.deferred]
        for step in following:
            if step not in paths:
                paths[step] = [*paths[state], step[0]]
                todo.append(step)
    reached: dict[str, list[str]] = {}
    for (module, _), path in paths.items():
        if module not in reached or len(path) < len(reached[module]):
            reached[module] = path
    return reached


def closure(start: str) -> dict[str, list[str]]:
    """What ``start``'s code may import when it runs, each with an import path to it."""
    return _walk(start, called=True)


def import_time_closure(start: str) -> dict[str, list[str]]:
    """What ``import start`` runs: module-level imports only, parent packages included."""
    return _walk(start, called=False)


def _cycle_through(module: str) -> list[str] | None:
    """An import path from ``module`` back to itself, deferred imports included; ``None`` if there is none."""
    for edge in edges(module):
        back = _walk(edge.target, called=edge.uses_code).get(module)
        if back is not None:
            return [module, *back]
    return None


def _io(reached: dict[str, list[str]]) -> list[str]:
    """The I/O modules and libraries reached, each as the import path that reaches it."""
    return sorted(
        " -> ".join(path)
        for m, path in reached.items()
        if m in IO_LIBRARIES or any(m == layer or m.startswith(layer + ".") for layer in IO_LAYERS)
    )


def test_the_model_never_imports_io():
    assert _io(closure(MODEL)) == []


def test_importing_the_model_loads_no_io():
    assert _io(import_time_closure(MODEL)) == []


def test_no_import_cycle_through_the_model():
    """The old circle: detector -> weights.hub_mixin -> factory -> detector, and publish.export -> detector."""
    cycle = _cycle_through(MODEL)
    assert cycle is None, " -> ".join(cycle)


@pytest.mark.parametrize("layer", ["fpn_zoo.factory", "fpn_zoo.weights.hub_mixin", "fpn_zoo.publish.export"])
def test_the_layers_above_build_on_the_model(layer):
    assert MODEL in closure(layer)


def test_the_checks_can_fail():
    """The graph is read correctly: the layers above the model do reach the I/O the model must not."""
    assert Edge("fpn_zoo.detector") in edges("fpn_zoo.factory")
    assert Edge("fpn_zoo.factory", deferred=True) in edges("fpn_zoo.weights.hub_mixin")
    assert {"huggingface_hub", "safetensors"} <= set(closure("fpn_zoo.weights.hub_mixin"))
    assert _io(closure("fpn_zoo.factory")) != []  # the factory fetches weights: I/O is found where it is
    assert _cycle_through("fpn_zoo.weights.hub_mixin") is not None  # the mixin and the factory call each other
