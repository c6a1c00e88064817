"""The dependency rule, checked on the source: the core never imports the outer layers
(cli, bench, ui) nor Qt, outer layers never import each other's internals the wrong way,
and no module or package imports in a circle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "joyq_studio"
OUTER = ("cli", "bench", "ui")
# which outer layer may import which: the CLI dispatches to the benchmarks; nothing else
ALLOWED_OUTER = {"cli": {"bench"}, "bench": set(), "ui": set(), "entry": {"cli", "bench", "ui"}}


def module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Absolute names of the joyq_studio modules (and Qt) a file imports, anywhere in it."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.add(mod)
            found.update(f"{mod}.{a.name}" for a in node.names)  # `from pkg import module`
    return {m for m in found if m.startswith(("joyq_studio", "PySide6", "shiboken6"))}


ENTRY = "joyq_studio.__main__"  # `python -m joyq_studio` starts the app: above every layer


def layer_of(module: str) -> str:
    if module == ENTRY:
        return "entry"
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in OUTER else "core"


MODULES = {module_name(p): p for p in PKG.rglob("*.py")}
GRAPH = {m: {i for i in imports_of(p) if i in MODULES and i != m} for m, p in MODULES.items()}


@pytest.mark.parametrize("module", sorted(m for m in MODULES if layer_of(m) == "core"))
def test_core_never_imports_outer_layers_or_qt(module):
    bad = sorted(
        i for i in imports_of(MODULES[module]) if i.startswith(("PySide6", "shiboken6")) or layer_of(i) != "core"
    )
    assert not bad, f"{module} (core) imports {bad}"


def test_outer_layers_only_import_what_they_may():
    bad = []
    for m, deps in GRAPH.items():
        layer = layer_of(m)
        if layer == "core":
            continue
        for d in deps:
            other = layer_of(d)
            if other not in ("core", layer) and other not in ALLOWED_OUTER[layer]:
                bad.append(f"{m} -> {d}")
    assert not bad, bad


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _without_package_inits(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """A package's __init__ re-exporting its own modules is not a cycle of modules: drop the
    edges from a package to its own submodules."""
    return {m: {d for d in deps if not d.startswith(m + ".")} for m, deps in graph.items()}


def test_no_module_imports_in_a_circle():
    assert _cycles(_without_package_inits(GRAPH)) == []


def test_no_package_imports_in_a_circle():
    def package(m: str) -> str:
        parts = m.split(".")
        if m == ENTRY or len(parts) > 2 or MODULES[m].name == "__init__.py":
            return ".".join(parts[:2])
        return "joyq_studio.<core modules>"

    pgraph: dict[str, set[str]] = {}
    for m, deps in GRAPH.items():
        pgraph.setdefault(package(m), set()).update(package(d) for d in deps if package(d) != package(m))
    assert _cycles(pgraph) == []


def test_the_checker_finds_a_cycle_and_a_violation():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]
    assert layer_of("joyq_studio.ui.window") == "ui" and layer_of("joyq_studio.store") == "core"
