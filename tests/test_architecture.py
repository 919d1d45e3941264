"""The layout's laws, read from the source with ``ast``: no import cycles, no reads of another module's
private members, nothing below the ``Migration`` facade imports it, and every public name says what it is for.

Every import counts, wherever it is written: at module level, inside a function, or under
``TYPE_CHECKING`` (a cycle hidden behind a function-level import is still a cycle).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("migration_errors", "redis_connect", "legacy_bus", "graph_flows", "checkpoints", "migration_kit")
FACADE = "migration_kit.migration"
# Only these may import the facade: the package that exports it and the command line that builds it.
FACADE_IMPORTERS = {"migration_kit", "migration_kit.cli", "migration_kit.cli.app", "migration_kit.cli.main"}


@dataclass
class Module:
    name: str
    path: Path
    tree: ast.Module
    is_package: bool
    imports: set[str] = field(default_factory=set)  # modules of ours this one imports
    private_imports: list[tuple[int, str, str]] = field(default_factory=list)  # (line, module, name)
    private_reads: list[tuple[int, str]] = field(default_factory=list)  # (line, "expr._name") on something not self/cls
    defines: set[str] = field(default_factory=set)  # private names this module defines


def _modules() -> dict[str, Module]:
    found: dict[str, Module] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            is_package = parts[-1] == "__init__"
            name = ".".join(parts[:-1] if is_package else parts)
            found[name] = Module(name, path, ast.parse(path.read_text(), str(path)), is_package)
    for mod in found.values():
        _read(mod, found)
    return found


def _absolute(mod: Module, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = mod.name.split(".") if mod.is_package else mod.name.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _on_self(node: ast.Attribute) -> bool:
    return isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")


def _read(mod: Module, modules: dict[str, Module]) -> None:
    for node in ast.walk(mod.tree):
        if isinstance(node, ast.Import):
            mod.imports.update(a.name for a in node.names if a.name in modules)
        elif isinstance(node, ast.ImportFrom):
            target = _absolute(mod, node)
            for alias in node.names:
                if f"{target}.{alias.name}" in modules:  # a submodule: the package's own names are not used
                    mod.imports.add(f"{target}.{alias.name}")
                elif target in modules:
                    mod.imports.add(target)
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        mod.private_imports.append((node.lineno, target, alias.name))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name.startswith("_"):
            mod.defines.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for t in ast.walk(target):
                    if isinstance(t, ast.Attribute) and t.attr.startswith("_") and _on_self(t):
                        mod.defines.add(t.attr)
                    elif isinstance(t, ast.Name) and t.id.startswith("_"):
                        mod.defines.add(t.id)
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__") and not _on_self(node):
            mod.private_reads.append((node.lineno, ast.unparse(node)))
    mod.imports.discard(mod.name)


MODULES = _modules()
OURS_PRIVATE = set().union(*(m.defines for m in MODULES.values()))
# Reads of a third-party object's private member that share a name with one of ours: pyee's own
# EventEmitter._lock, taken around its _events (pyee's public API cannot list listeners in order nor
# map a ``once`` wrapper back to its listener; see legacy_bus/adapters/pyee.py).
THIRD_PARTY_READS = {("legacy_bus.adapters.pyee", "emitter._lock"), ("legacy_bus.adapters.pyee", "self.emitter._lock")}


def _cycles(modules: dict[str, Module]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(modules[v].imports):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for name in sorted(modules):
        if name not in index:
            visit(name)
    return out


def test_the_checker_sees_every_package_and_the_imports_between_them():
    assert {m.split(".")[0] for m in MODULES} == set(PACKAGES)
    assert "migration_kit.migration" in MODULES["migration_kit"].imports
    assert "legacy_bus" in MODULES["graph_flows.flow"].imports | {i.split(".")[0] for i in MODULES["graph_flows.flow"].imports}


def test_no_import_cycles_function_level_and_type_checking_imports_included():
    assert _cycles(MODULES) == []


def test_packages_depend_one_way():
    # migration_kit -> graph_flows -> legacy_bus; migration_kit -> checkpoints; nothing imports migration_kit.
    # redis_connect (opening Redis by URL, one message when it is unreachable) sits below the Redis users.
    allowed = {
        "migration_errors": set(),
        "redis_connect": {"migration_errors"},
        "legacy_bus": {"migration_errors", "redis_connect"},
        "graph_flows": {"migration_errors", "legacy_bus"},
        "checkpoints": {"migration_errors", "redis_connect"},
        "migration_kit": set(PACKAGES),
    }
    wrong = sorted(
        f"{m.name} imports {target}"
        for m in MODULES.values()
        for target in m.imports
        if target.split(".")[0] != m.name.split(".")[0] and target.split(".")[0] not in allowed[m.name.split(".")[0]]
    )
    assert wrong == []


def test_only_the_package_and_the_cli_import_the_migration_facade():
    importers = sorted(m.name for m in MODULES.values() if FACADE in m.imports and m.name not in FACADE_IMPORTERS)
    assert importers == []


def test_no_module_imports_another_modules_private_names():
    found = sorted(f"{m.name}:{line} imports {target}.{name}" for m in MODULES.values() for line, target, name in m.private_imports)
    assert found == []


def _own(mod: Module, attr: str) -> bool:
    """Whether a private ``attr`` read on something other than self is ``mod``'s own: ``mod`` defines it and
    none of the modules it imports does (else the object may well be theirs: ``handle.cutover._count``)."""
    return attr in mod.defines and not any(attr in MODULES[i].defines for i in mod.imports if i in MODULES)


def test_no_module_reads_another_modules_private_members():
    # A private name a module defines itself is its own to read (another instance of its own class,
    # its own module-level cache); one only another module of ours defines is reaching in.
    found = sorted(
        f"{m.name}:{line} reads {text}"
        for m in MODULES.values()
        for line, text in m.private_reads
        if (attr := text.rsplit(".", 1)[1]) in OURS_PRIVATE and not _own(m, attr) and (m.name, text) not in THIRD_PARTY_READS
    )
    assert found == []


def test_the_checker_catches_a_cycle_a_facade_import_and_a_private_read(tmp_path):
    fake = {
        "migration_kit.a": Module("migration_kit.a", tmp_path / "a.py", ast.parse("from migration_kit import b\n"), False),
        "migration_kit.b": Module("migration_kit.b", tmp_path / "b.py", ast.parse(
            "def f():\n    from migration_kit.a import x\n    return m._secret\n"), False),
    }
    for mod in fake.values():
        _read(mod, fake)
    assert _cycles(fake) == [["migration_kit.a", "migration_kit.b"]]
    assert fake["migration_kit.b"].private_reads == [(3, "m._secret")]


def _undocumented(tree: ast.Module, where: str) -> list[str]:
    """``where:line name`` of each public class, function and method in ``tree`` without a docstring.

    Public: the name does not start with ``_`` and neither does any class it sits in. Functions
    nested in functions are no one's API; ``@overload`` stubs and property setters/deleters share
    the documented getter's or implementation's docstring.
    """
    found: list[str] = []

    def decorators(node: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
        names = set()
        for d in node.decorator_list:
            d = d.func if isinstance(d, ast.Call) else d
            names.add(d.id if isinstance(d, ast.Name) else d.attr if isinstance(d, ast.Attribute) else "")
        return names

    def visit(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if not isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) or node.name.startswith("_"):
                continue
            if not isinstance(node, ast.ClassDef) and decorators(node) & {"overload", "setter", "deleter"}:
                continue
            if ast.get_docstring(node) is None:
                found.append(f"{where}:{node.lineno} {prefix}{node.name}")
            if isinstance(node, ast.ClassDef):
                visit(node.body, f"{prefix}{node.name}.")

    visit(tree.body, "")
    return found


def test_every_public_name_has_a_docstring():
    # Overrides of a third-party base's methods (BaseCheckpointSaver's get_tuple, put, list, ...)
    # are documented too: a one-liner saying what this one adds costs less than an exemption list.
    missing = sorted(line for m in MODULES.values() for line in _undocumented(m.tree, m.name))
    assert missing == []


_DOCSTRING_CASES = '''
from typing import overload
class Open:
    def method(self): pass
    def _private(self): pass
    @property
    def size(self):
        """The size."""
    @size.setter
    def size(self, v): pass
class _Hidden:
    def method(self): pass
@overload
def f(x: int) -> int: ...
def f(x):
    def inner(): pass
async def g():
    """Documented."""
'''


def test_the_docstring_checker_sees_classes_functions_and_methods_not_private_or_nested_ones():
    assert _undocumented(ast.parse(_DOCSTRING_CASES), "m") == ["m:3 Open", "m:4 Open.method", "m:15 f"]
