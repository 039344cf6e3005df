"""No import circles in sre_space: a module never imports (even lazily) one that imports it back.

Lazy imports inside functions count: they hide a circle from Python's import
machinery, not from a reader. Read from the source with ``ast``.

The layers themselves are import-linter's contracts (``[tool.importlinter]`` in
pyproject.toml, run by ``lint-imports``); they do not see a circle inside one
layer, which this test does, nor a module missing from the textual rule.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import helpers

ROOT = helpers.ROOT
SRC = ROOT / "src"

# Circles that exist and are not this test's to break: each names its owner's change.
# None are left; an entry here must say whose change will break it.
KNOWN: set[frozenset[str]] = set()


def import_graph() -> dict[str, set[str]]:
    modules: dict[str, Path] = {}
    for path in (SRC / "sre_space").rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            else:
                continue
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: set[str] = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(frozenset(component))
    return found


def test_the_finder_sees_a_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(graph) == [frozenset({"a", "b", "c"})]


def test_no_module_imports_one_that_imports_it_back() -> None:
    new = [sorted(c) for c in circles(import_graph()) if c not in KNOWN]
    assert not new, new


def test_the_textual_rule_covers_every_module_but_the_clients() -> None:
    """A new top-level module is placed in the layers (exhaustive); here, in the textual rule too."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contracts = {c["id"]: c for c in config["tool"]["importlinter"]["contracts"]}
    listed = set(contracts["no-textual-in-core"]["source_modules"])
    top = {
        f"sre_space.{p.stem if p.is_file() else p.name}"
        for p in (SRC / "sre_space").iterdir()
        if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").exists()
    }
    clients = {"sre_space.__main__", "sre_space.cli", "sre_space.tui"}
    assert listed == top - clients


# Sizes a reader can hold (issue 26): a module or class past them says at its
# top why it is one piece ("on purpose"); the next line past them fails here.
MODULE_LINES = 500
CLASS_LINES = 300


def test_modules_and_classes_are_small_or_say_why() -> None:
    too_big = []
    for path in SRC.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text)
        n = len(text.splitlines())
        if n > MODULE_LINES and "on purpose" not in (ast.get_docstring(tree) or ""):
            too_big.append(f"{path.relative_to(SRC)}: {n} lines")
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
                lines = node.end_lineno - node.lineno + 1
                if lines > CLASS_LINES and "on purpose" not in (ast.get_docstring(node) or ""):
                    too_big.append(f"{path.relative_to(SRC)}: class {node.name}, {lines} lines")
    assert not too_big, too_big
