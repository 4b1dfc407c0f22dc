"""The import graph of app/, agents/ and tables/: no circle, and nothing below the entry
points imports app.bootstrap (it assembles them; they are handed what they need).

Every import counts, those under `if TYPE_CHECKING:` and inside functions too: a type
named from above is an arrow back up all the same.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("app", "agents", "tables")


def module_names() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imported_by(module: str, path: Path, known: Iterable[str]) -> set[str]:
    """The project's modules `module` imports anywhere in its file."""
    known = set(known)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}".rstrip(".")
            # `from package import module` imports the module; `from module import name`
            # the module alone.
            targets |= {f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                        for alias in node.names}
    return {target for target in targets if target in known and target != module}


def import_graph() -> dict[str, set[str]]:
    modules = module_names()
    return {module: imported_by(module, path, modules) for module, path in modules.items()}


def circles(graph: Mapping[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    lowest: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(module: str) -> None:
        index[module] = lowest[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in sorted(graph.get(module, ())):
            if target not in index:
                visit(target)
                lowest[module] = min(lowest[module], lowest[target])
            elif target in on_stack:
                lowest[module] = min(lowest[module], index[target])
        if lowest[module] == index[module]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(component)

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def test_the_cycle_finder_finds_a_circle_and_only_its_members():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": {"e"}, "e": set(), "f": {"f"}}
    assert circles(graph) == [{"a", "b", "c"}]


def test_from_a_package_import_a_module_is_an_arrow_to_the_module():
    graph = import_graph()
    assert "app.engine.faust.adapter" in graph["app.bootstrap"]
    assert "app.engine.faust" not in graph["app.bootstrap"]


def test_no_pipeline_table_or_web_view_imports_bootstrap():
    graph = import_graph()
    importing = sorted(module for module, targets in graph.items()
                       if module.startswith(("agents", "tables", "app.web"))
                       and "app.bootstrap" in targets)
    assert importing == []


def test_no_import_circle():
    assert circles(import_graph()) == []
