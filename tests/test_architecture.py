"""The package's import structure: no cycles inside ``egain``, and imports only run downward.

Every ``import``/``from ... import`` counts, also those inside functions: a lazy import hides a
cycle from Python's loader but not from a reader, so it is a cycle all the same.
"""

from __future__ import annotations

import ast
from pathlib import Path

import egain

ROOT = Path(egain.__file__).resolve().parent
#: packages below the run layer: they may not import trainers, workflows, the CLI or the app
LOWER = (
    "applications",
    "generators",
    "encoders",
    "methods",
    "metrics",
    "faces",
    "data",
    "losses",
    "nn",
    "ops",
    "runtime",
)
UPPER = ("training", "workflows", "cli", "app")


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in ROOT.rglob("*.py")}


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The egain module a dotted name refers to (a module, or the package/module defining a name)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                # ``from pkg import sub`` imports the submodule when there is one
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for t in targets:
                if t.startswith("egain"):
                    r = _resolve(t, modules)
                    if r and r != mod:
                        graph[mod].add(r)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
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

    for v in graph:
        if v not in index:
            visit(v)
    return out


def _is_package_init_edge(a: str, b: str) -> bool:
    """A package's ``__init__`` re-exporting its own submodules is not a cycle of the architecture."""
    return b.startswith(a + ".") or a.startswith(b + ".")


def test_no_import_cycles():
    graph = import_graph()
    pruned = {m: {t for t in ts if not _is_package_init_edge(m, t)} for m, ts in graph.items()}
    assert _cycles(pruned) == []


def test_imports_run_downward():
    bad = []
    for mod, targets in import_graph().items():
        layer = mod.split(".")[1] if mod.count(".") else ""
        if layer not in LOWER:
            continue
        for t in targets:
            if t.count(".") and t.split(".")[1] in UPPER:
                bad.append(f"{mod} -> {t}")
    assert bad == []


def test_the_checker_sees_cycles_and_upward_imports():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
