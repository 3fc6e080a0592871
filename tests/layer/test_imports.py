"""Imports of ``channels_scale.layer`` flow one way: no cycle, nothing from the layers above.

Read from the source with :mod:`ast` (nothing is imported): every ``import`` and ``from ...
import`` of a layer module, at module level or inside a function (a lazy import still ties the
two modules together), including those under ``TYPE_CHECKING``. A package's implicit import of
its own ``__init__`` when a submodule is loaded is not an edge (every submodule would then be in
a cycle with its package).
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = "channels_scale"
LAYER = f"{PACKAGE}.layer"
#: what the layer may use outside itself: the exception tree and the network helpers, the
#: lowest modules of the package (they must not import the layer back: checked below)
BELOW_THE_LAYER = {f"{PACKAGE}.exceptions", f"{PACKAGE}.net"}


def _module_file(module: str) -> Path | None:
    base = SRC.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(module: str) -> set[str]:
    """The modules of this package that ``module`` imports (resolved to files that exist)."""
    path = _module_file(module)
    assert path is not None, module
    return imports_in(path.read_text(), module, is_package=path.name == "__init__.py")


def imports_in(source: str, module: str, *, is_package: bool) -> set[str]:
    """The modules of this package imported by ``source``, the text of ``module``."""
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            # ``from pkg import name``: an edge to the submodule when ``name`` is one, else to pkg
            targets = [
                f"{base}.{alias.name}" if _module_file(f"{base}.{alias.name}") else base
                for alias in node.names
            ]
        for target in targets:
            if target == PACKAGE or not target.startswith(f"{PACKAGE}."):
                continue
            # ``import a.b.c`` where c is a name, not a module: the nearest module file
            while _module_file(target) is None and "." in target:
                target = target.rpartition(".")[0]
            if target != module:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    """Every module reachable from the layer's modules, with its imports inside the package."""
    graph: dict[str, set[str]] = {}
    todo = [_module_name(p) for p in sorted((SRC / PACKAGE / "layer").rglob("*.py"))]
    while todo:
        module = todo.pop()
        if module in graph:
            continue
        graph[module] = imports_of(module)
        todo.extend(graph[module] - graph.keys())
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a path ``[a, b, ..., a]``, or None (pure)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)) is not None:
            return cycle
    return None


def test_find_cycle_sees_a_cycle() -> None:
    """The premise: the checker reports a cycle when there is one, and none when there is not."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_relative_lazy_and_type_checking_imports_are_edges() -> None:
    source = """
from typing import TYPE_CHECKING
from . import codec
from ..history import merge
from .router import Router
if TYPE_CHECKING:
    from channels_scale.presence import Presence
def later():
    import channels_scale.stack.configs
    from channels_scale.layer import RedisChannelLayer
"""
    assert imports_in(source, f"{LAYER}.example", is_package=False) == {
        f"{LAYER}.codec",
        f"{PACKAGE}.history.merge",
        f"{LAYER}.router",
        f"{PACKAGE}.presence",
        f"{PACKAGE}.stack.configs",
        LAYER,
    }
    assert f"{LAYER}.channel_layer" in import_graph()[LAYER]


def test_the_layer_has_no_import_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_layer_imports_nothing_from_above() -> None:
    upward = {
        (module, target)
        for module, deps in import_graph().items()
        if module == LAYER or module.startswith(f"{LAYER}.")
        for target in deps
        if not (target == LAYER or target.startswith(f"{LAYER}.") or target in BELOW_THE_LAYER)
    }
    assert not upward, f"the layer imports from above it: {sorted(upward)}"


def test_what_the_layer_stands_on_does_not_import_it() -> None:
    graph = import_graph()
    for module in BELOW_THE_LAYER:
        assert graph[module] <= BELOW_THE_LAYER, (module, graph[module])


def test_layer_files_stay_under_400_lines() -> None:
    """CONVENTIONS: a file past ~400 lines is asking to be split along a real seam."""
    long = {
        path.name: n
        for path in (SRC / PACKAGE / "layer").rglob("*.py")
        if (n := len(path.read_text().splitlines())) > 400
    }
    assert not long, f"layer files over 400 lines: {long}"
