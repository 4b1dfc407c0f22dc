"""No code outside the adapter (app/engine/faust/) reaches into Faust, aiokafka, mode or aiohttp.

Read from the source, without running it. What counts as reaching in:
- importing a private name or module of theirs (`from faust.x import _y`);
- replacing a part of theirs (`sender.BACKOFF_OVERRIDE = ...`, `setattr(Consumer, ...)`
  on a name imported from them);
- reading, calling or setting `obj._name`, or `getattr(obj, "_name")`, where `_name` is
  a private name their sources define, unless `obj` is `self`, `cls` or `super()` in a
  class that defines `_name` itself or inherits it from our own classes only. Our
  objects' private names that happen to match one of theirs are refused too when read
  from outside the object: a private attribute is its own class's business.
namedtuple's public `_replace`, `_asdict`, ... are not private.
"""

from __future__ import annotations

import ast
import functools
import importlib
from collections import namedtuple
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UPSTREAM = ("faust", "aiokafka", "mode", "aiohttp")
CHECKED = ("app", "agents", "tables")
ADAPTER = ROOT / "app" / "engine" / "faust"
OUTSIDE_THE_ADAPTER = {ADAPTER / "app.py"}  # the Faust app, not the adapter
SELF_NAMES = ("self", "cls")
REFLECTION = ("getattr", "hasattr", "setattr", "delattr")


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


NAMEDTUPLE_API = frozenset(filter(_private, dir(namedtuple("Probe", "field"))))


def _defined_names(tree: ast.AST) -> set[str]:
    """Every name a source defines: functions, classes, assigned names and attributes."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    return names


@functools.cache
def upstream_private_names() -> frozenset[str]:
    names: set[str] = set()
    for package in UPSTREAM:
        for path in Path(importlib.import_module(package).__file__).parent.rglob("*.py"):
            source = path.read_text(encoding="utf-8", errors="replace")
            names |= {name for name in _defined_names(ast.parse(source)) if _private(name)}
    return frozenset(names)


Classes = dict[str, list[tuple[list[str], set[str]]]]


def _class_index(trees: dict[str, ast.AST]) -> Classes:
    """Our classes by name (several modules may use one): the names of each one's bases,
    and the names it defines."""
    index: Classes = {}
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                bases = [ast.unparse(base).rsplit(".", 1)[-1] for base in node.bases]
                index.setdefault(node.name, []).append((bases, _defined_names(node)))
    return index


def _defines(index: Classes, klass: str, name: str, seen: frozenset[str] = frozenset()
             ) -> bool:
    """Whether our class `klass` defines `name` or inherits it from our own classes."""
    if klass in seen:
        return False
    return any(name in names or any(_defines(index, base, name, seen | {klass})
                                    for base in bases)
               for bases, names in index.get(klass, ()))


def _upstream_module(module: str | None) -> bool:
    return module is not None and module.split(".")[0] in UPSTREAM


class _Reader(ast.NodeVisitor):
    def __init__(self, path: str, index: Classes,
                 upstream_names: frozenset[str]) -> None:
        self.path = path
        self.index = index
        self.upstream_names = upstream_names
        self.imported: set[str] = set()  # local names bound to something of theirs
        self.classes: list[str] = []
        self.self_names: list[str | None] = [None]
        self.found: list[str] = []

    def note(self, node: ast.AST, why: str) -> None:
        self.found.append(f"{self.path}:{node.lineno}: {why}: {ast.unparse(node)}")

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if _upstream_module(alias.name):
                self.imported.add(alias.asname or alias.name.split(".")[0])
                if any(_private(part) for part in alias.name.split(".")):
                    self.note(node, "imports a private module")

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if not _upstream_module(node.module):
            return
        if any(_private(part) for part in node.module.split(".")):
            self.note(node, "imports from a private module")
        for alias in node.names:
            self.imported.add(alias.asname or alias.name)
            if _private(alias.name):
                self.note(node, "imports a private name")

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.classes.append(node.name)
        for child in node.body:
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                arguments = child.args.posonlyargs + child.args.args
                self.self_names.append(arguments[0].arg if arguments else None)
                self.visit(child)
                self.self_names.pop()
            else:
                self.visit(child)
        self.classes.pop()

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if isinstance(node.ctx, (ast.Store, ast.Del)) and self._theirs(node.value):
            self.note(node, "replaces a part of theirs")
        self._check_private(node, node.value, node.attr)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        function = node.func
        if (isinstance(function, ast.Name) and function.id in REFLECTION
                and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
                and isinstance(node.args[1].value, str)):
            if function.id in ("setattr", "delattr") and self._theirs(node.args[0]):
                self.note(node, "replaces a part of theirs")
            self._check_private(node, node.args[0], node.args[1].value)
        self.generic_visit(node)

    def _theirs(self, receiver: ast.expr) -> bool:
        while isinstance(receiver, ast.Attribute):
            receiver = receiver.value
        return isinstance(receiver, ast.Name) and receiver.id in self.imported

    def _check_private(self, node: ast.AST, receiver: ast.expr, name: str) -> None:
        if not _private(name) or name in NAMEDTUPLE_API or name not in self.upstream_names:
            return
        if self._own(receiver, name):
            return
        self.note(node, f"reaches their private {name}")

    def _own(self, receiver: ast.expr, name: str) -> bool:
        """Whether `receiver.name` is the enclosing class's own attribute."""
        if not self.classes:
            return False
        is_self = (isinstance(receiver, ast.Name)
                   and receiver.id in (self.self_names[-1], *SELF_NAMES))
        is_super = (isinstance(receiver, ast.Call) and isinstance(receiver.func, ast.Name)
                    and receiver.func.id == "super")
        return (is_self or is_super) and _defines(self.index, self.classes[-1], name)


def private_accesses(sources: dict[str, str]) -> list[str]:
    """`path:line: why: code` for every reach into Faust, aiokafka, mode or aiohttp."""
    trees = {path: ast.parse(source) for path, source in sources.items()}
    index = _class_index(trees)
    found: list[str] = []
    for path, tree in trees.items():
        reader = _Reader(path, index, upstream_private_names())
        reader.visit(tree)
        found += reader.found
    return found


def _checked_sources() -> dict[str, str]:
    paths = [path for package in CHECKED for path in sorted((ROOT / package).rglob("*.py"))
             if not path.is_relative_to(ADAPTER) or path in OUTSIDE_THE_ADAPTER]
    return {str(path.relative_to(ROOT)): path.read_text() for path in paths}


def test_nothing_outside_the_adapter_reaches_into_faust_aiokafka_mode_or_aiohttp():
    assert private_accesses(_checked_sources()) == []


PLANTED = '''
from aiokafka.producer import sender
from faust.transport.consumer import Consumer
from faust.transport.consumer import _private_helper
import mode.utils._compat


def offsets(consumer):
    return consumer._read_offset


def port(site):
    return getattr(site, "_server", None)


sender.BACKOFF_OVERRIDE = 0.001
Consumer.perform_seek = offsets
setattr(Consumer, "perform_seek", offsets)


class Worker(Consumer):
    def stopped(self):
        return self._stopped


class Ours:
    def __init__(self):
        self._stopped = False

    def stopped(self):
        return self._stopped


class Derived(Ours):
    def stopped(self):
        return self._stopped or super()._stopped


def peek(ours: Ours):
    return ours._stopped


def replaced(row):
    return row._replace(field=1)
'''


def test_the_check_finds_each_kind_of_reach_and_nothing_else():
    found = private_accesses({"planted.py": PLANTED})
    lines = [line.split(": ", 1)[0] for line in found]
    assert lines == ["planted.py:4", "planted.py:5", "planted.py:9", "planted.py:13",
                     "planted.py:16", "planted.py:17", "planted.py:18", "planted.py:23",
                     "planted.py:40"], "\n".join(found)
