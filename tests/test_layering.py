"""The package's folders are its layers: imports point down (or sideways), never up, and never in a circle.

    settings, clock, exceptions, names  <  db  <  domain, queue  <  registry, access  <  jobs  <  cli, web, consumers

Read from the source with ``ast``, so a lazy import inside a function counts
as much as one at the top; only ``if TYPE_CHECKING:`` imports (annotations)
are left out.
"""

from __future__ import annotations

import ast
from pathlib import Path

import meingym_tasks

PACKAGE = Path(meingym_tasks.__file__).parent

LAYERS = {
    "meingym_tasks": 0,
    "meingym_tasks.clock": 0,
    "meingym_tasks.exceptions": 0,
    "meingym_tasks.settings": 0,
    "meingym_tasks.names": 0,
    "meingym_tasks.db": 1,
    "meingym_tasks.domain": 2,
    "meingym_tasks.queue": 2,
    "meingym_tasks.registry": 3,
    "meingym_tasks.access": 3,
    "meingym_tasks.jobs": 4,
    "meingym_tasks.consumers": 5,
    "meingym_tasks.cli": 5,
    "meingym_tasks.web": 5,
    "meingym_tasks.__main__": 5,
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> int:
    for prefix in sorted(LAYERS, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return LAYERS[prefix]
    raise AssertionError(f"{module} is in no layer: add its folder to LAYERS")


def is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The package modules ``path`` imports at run time (``from x import name`` counts x.name when it is one)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("meingym_tasks"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("meingym_tasks"):
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in modules else node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return found


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(path): path for path in PACKAGE.rglob("*.py") if "migrations" not in path.parts}
    modules = set(paths)
    return {name: imports_of(path, modules) - {name} for name, path in paths.items()}


def test_no_module_imports_one_from_a_higher_layer() -> None:
    upward = [
        f"{module} (layer {layer_of(module)}) imports {target} (layer {layer_of(target)})"
        for module, targets in import_graph().items()
        for target in targets
        if layer_of(target) > layer_of(module)
    ]

    assert upward == []


def test_the_import_graph_has_no_cycle() -> None:
    graph = import_graph()
    # A package's __init__ that re-exports its modules is not a cycle with them: drop package -> own child edges.
    edges = {m: {t for t in ts if not t.startswith(m + ".")} for m, ts in graph.items()}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(edges.get(module, ())):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module)

    assert cycles == []


def test_the_layers_check_finds_an_upward_import(tmp_path: Path) -> None:
    """The checker itself: a domain module importing the registry is reported."""
    source = tmp_path / "bad.py"
    source.write_text("from meingym_tasks.registry import queries\n")
    targets = imports_of(source, {"meingym_tasks.registry.queries"})

    assert targets == {"meingym_tasks.registry.queries"}
    assert layer_of("meingym_tasks.registry.queries") > layer_of("meingym_tasks.domain.models")
