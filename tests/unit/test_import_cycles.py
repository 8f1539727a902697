"""No import cycles between the project's modules (issue 12).

import-linter keeps the layers pointing one way, but not modules of one package from importing each
other in a ring (the old ``cli`` <-> ``drift_cli``, ``settings`` <-> ``stack``). Function-level imports
count: they hide a cycle, they do not remove it. ``if TYPE_CHECKING:`` blocks do not.
"""

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("intentloop", "store", "streams", "trainer", "serving")


def _modules(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    mods = {}
    for pkg in packages:
        for path in (root / pkg).rglob("*.py"):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if "migrations" in parts:
                continue
            if parts[-1] == "__init__":
                parts.pop()
            mods[".".join(parts)] = path
    return mods


def _owner(name: str, mods: dict[str, Path]) -> str | None:
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def _type_checking_only(tree: ast.AST) -> set[int]:
    return {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for node in ast.walk(block)
    }


def _imports(module: str, path: Path, mods: dict[str, Path]) -> set[str]:
    tree = ast.parse(path.read_text())
    skip = _type_checking_only(tree)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found: set[str | None] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(_owner(alias.name, mods) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package[: len(package) - node.level + 1], *([base] if base else [])])
            for alias in node.names:
                found.add(_owner(f"{base}.{alias.name}", mods) or _owner(base, mods))
    # A package's __init__ naming its own submodules is how packages work, not a cycle.
    return {m for m in found if m and m != module and not m.startswith(module + ".")}


def _first_cycle(root: Path, packages: tuple[str, ...]) -> list[str] | None:
    mods = _modules(root, packages)
    graph = {module: _imports(module, path, mods) for module, path in mods.items()}
    try:
        tuple(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        return list(exc.args[1])
    return None


def test_no_import_cycles() -> None:
    cycle = _first_cycle(ROOT, PACKAGES)
    assert cycle is None, f"import cycle: {' -> '.join(cycle or [])}"


def test_the_check_sees_function_level_and_relative_cycles(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from pkg import a\n")
    (pkg / "a.py").write_text("def f():\n    from pkg.b import g\n    return g\n")
    (pkg / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import c\n")
    (pkg / "c.py").write_text("from . import a\n")
    assert _first_cycle(tmp_path, ("pkg",)) is None  # a -> b only under TYPE_CHECKING
    (pkg / "b.py").write_text("from .c import x\n")
    assert sorted(set(_first_cycle(tmp_path, ("pkg",)) or [])) == ["pkg.a", "pkg.b", "pkg.c"]
