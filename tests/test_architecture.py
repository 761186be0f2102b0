"""The import rules of ARCHITECTURE.md, read from the code's ASTs: each package of bayling/ imports only packages of
lower layers, nothing in bayling/ imports stages/, flows/ or tools/, and no two modules import each other, directly or
through others. Imports inside functions count, since they run; imports under `if TYPE_CHECKING:` do not."""

from __future__ import annotations

import ast
from pathlib import Path


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


# Bottom to top. A package may import its own modules and those of any package in a lower layer: stages follow the
# pipeline's order, so a stage may read an earlier stage's code and never a later one's.
LAYERS: list[tuple[str, ...]] = [
    ("core",),
    ("config",),
    ("models",),
    ("base_model",),
    ("fetch",),
    ("synthesize",),
    ("tokenize",),
    ("train",),
    ("evaluate",),
    ("register",),
    ("approvals", "reproduce"),
]
TOP_LEVEL = ("stages", "flows", "tools")  # entry points: they import bayling, never the other way round


def runtime_imports(tree: ast.AST, roots: tuple[str, ...] = ("bayling",)) -> list[str]:
    """Names of the modules under `roots` an AST imports, skipping `if TYPE_CHECKING:` blocks."""
    found: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.split(".")[0] in roots:
            found.extend([f"{node.module}.{alias.name}" for alias in node.names] + [node.module])
        elif isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names if alias.name.split(".")[0] in roots)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    files = {module_name(path, root): path for path in (root / "bayling").rglob("*.py")}
    graph = {}
    for name, path in files.items():
        # `from bayling.x import y` counts as importing bayling.x, and bayling.x.y too when y is a module
        graph[name] = {t for t in runtime_imports(ast.parse(path.read_text("utf-8"))) if t in files and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = counter
                counter += 1
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return found


def test_the_cycle_finder_finds_a_planted_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from bayling.x import y\ndef f():\n    import bayling.z\n")
    assert runtime_imports(tree) == ["bayling.z"]


def test_no_module_of_bayling_imports_itself_back(repo_root: Path):
    assert cycles(import_graph(repo_root)) == []


def layer_violations(root: Path, layers: list[tuple[str, ...]] = LAYERS) -> list[str]:
    """Every import in bayling/ that points at a package of the same or a higher layer (other than its own), at an
    entry point, or from a package the layers do not place."""
    rank = {package: level for level, packages in enumerate(layers) for package in packages}
    found = []
    for path in sorted((root / "bayling").rglob("*.py")):
        relative = path.relative_to(root / "bayling").parts
        if len(relative) == 1:
            if relative[0] != "__init__.py":
                found.append(f"bayling/{relative[0]}: a module outside every package")
            continue
        package = relative[0]
        if package not in rank:
            found.append(f"bayling/{package}: a package no layer places (add it to LAYERS and ARCHITECTURE.md)")
            continue
        where = path.relative_to(root).as_posix()
        targets: dict[str, str] = {}  # each package it imports, named by the shortest module it imports there
        for target in runtime_imports(ast.parse(path.read_text("utf-8")), ("bayling", *TOP_LEVEL)):
            key = ".".join(target.split(".")[:2]) if target.startswith("bayling.") else target.split(".")[0]
            targets[key] = min(targets.get(key, target), target, key=lambda name: (len(name), name))
        for target in sorted(targets.values()):
            parts = target.split(".")
            if parts[0] in TOP_LEVEL:
                found.append(f"{where} imports {target}: bayling never imports an entry point")
            elif len(parts) > 1 and parts[1] != package and parts[1] in rank and rank[parts[1]] >= rank[package]:
                found.append(f"{where} imports {target}: {parts[1]} is not below {package}")
    return found


def test_the_layer_check_finds_an_import_up_and_an_unplaced_package(tmp_path: Path):
    for name, text in {"core/a.py": "def f():\n    from bayling.evaluate import x\n",
                       "evaluate/x.py": "from bayling.core import a\nimport flows.retrain\n",
                       "register/y.py": "from bayling.evaluate.x import z\n",
                       "extra/z.py": ""}.items():
        (tmp_path / "bayling" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "bayling" / name).write_text(text)
    assert layer_violations(tmp_path) == [
        "bayling/core/a.py imports bayling.evaluate: evaluate is not below core",
        "bayling/evaluate/x.py imports flows.retrain: bayling never imports an entry point",
        "bayling/extra: a package no layer places (add it to LAYERS and ARCHITECTURE.md)",
    ]


def test_every_import_in_bayling_points_down_the_layers(repo_root: Path):
    assert layer_violations(repo_root) == []


MAX_MODULE_LINES = 400


def test_no_module_of_bayling_or_flows_is_over_the_size_limit(repo_root: Path):
    sizes = {path.relative_to(repo_root).as_posix(): len(path.read_text("utf-8").splitlines())
             for folder in ("bayling", "flows") for path in (repo_root / folder).rglob("*.py")}
    assert sizes and {name: n for name, n in sizes.items() if n > MAX_MODULE_LINES} == {}
