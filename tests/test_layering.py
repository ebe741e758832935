"""The map in docs/DEVELOPING.md, kept true: imports point down, and no module reaches into another's private names.

core/ is the trainer and knows nothing of the service; store/ is the data layer that api/ and worker/ share; the API
sends messages and never imports the worker. The test reads the source with `ast`, so imports inside functions
count as much as those at the top.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIRST_PARTY = ("api", "worker", "core", "store", "ganforge", "migrations")

# package -> the first-party packages it must never import
FORBIDDEN = {
    "core": {"api", "worker", "store", "ganforge"},
    "store": {"api", "worker", "ganforge"},
    "api": {"worker", "ganforge"},
    "worker": {"api", "ganforge"},
    "migrations": {"api", "worker", "ganforge", "core"},
}


def _sources(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py") if "versions" not in p.parts)


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(tree: ast.AST) -> list[tuple[int, str, list[str]]]:
    """(line, module, names) for every absolute import in the file, at any depth."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module, [alias.name for alias in node.names]))
    return found


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def import_violations(source: str, *, module: str, shown: str) -> list[str]:
    """Imports of `source` (the text of `module`, shown as `shown`) across a forbidden arrow."""
    forbidden = FORBIDDEN.get(module.split(".")[0], set())
    return [
        f"{shown}:{line} imports {name}"
        for line, name, _names in _imports(ast.parse(source))
        if name.split(".")[0] in forbidden
    ]


def _own_private_module(package: str, name: str, own: str) -> bool:
    """`from pkg import _mod` inside pkg itself: a private module is shared within its own package."""
    folder = ROOT.joinpath(*package.split("."))
    is_module = (folder / f"{name}.py").is_file() or (folder / name / "__init__.py").is_file()
    return is_module and own.split(".")[0] == package.split(".")[0]


def private_violations(source: str, *, module: str, shown: str) -> list[str]:
    """Private names of another first-party module: imported by name, or reached as `module._name`."""
    own = module
    tree = ast.parse(source)
    found = []
    aliases: dict[str, str] = {}  # local name -> first-party module it is bound to
    for line, imported, names in _imports(tree):
        if imported.split(".")[0] not in FIRST_PARTY or imported == own:
            continue
        found += [
            f"{shown}:{line} imports {imported}.{n}"
            for n in names
            if _is_private(n) and not _own_private_module(imported, n, own)
        ]
        if not names:
            aliases[imported.split(".")[0]] = imported.split(".")[0]
        for name in names:
            aliases[name] = f"{imported}.{name}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _is_private(node.attr):
            base = node.value
            while isinstance(base, ast.Attribute):
                base = base.value
            if isinstance(base, ast.Name) and base.id in aliases:
                found.append(f"{shown}:{node.lineno} uses {ast.unparse(node)}")
    return found


def _check(folder: str, checker: Callable[..., list[str]]) -> list[str]:
    return [
        v
        for path in _sources(folder)
        for v in checker(path.read_text(), module=_module_name(path), shown=str(path.relative_to(ROOT)))
    ]


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_point_down(package: str) -> None:
    violations = _check(package, import_violations)
    assert violations == [], f"{package}/ must not import {sorted(FORBIDDEN[package])}:\n" + "\n".join(violations)


@pytest.mark.parametrize("folder", [*FIRST_PARTY, "tests", "bench"])
def test_no_private_names_across_modules(folder: str) -> None:
    violations = _check(folder, private_violations)
    assert violations == [], "private names used outside their module:\n" + "\n".join(violations)


def test_the_checks_can_fail() -> None:
    """The checkers see a forbidden import inside a function and a private name reached through a module."""
    source = "def f():\n    from api.main import create_app\n    import core.train\n    return core.train._top_k\n"
    where = {"module": "core.probe", "shown": "core/probe.py"}
    assert import_violations(source, **where) == ["core/probe.py:2 imports api.main"]
    assert private_violations(source, **where) == ["core/probe.py:4 uses core.train._top_k"]
    from_import = "from core.train import _paired\n"
    assert private_violations(from_import, module="tests.t", shown="t.py") == ["t.py:1 imports core.train._paired"]
    own = "from core.train import _paired\n"
    assert private_violations(own, module="core.train", shown="core/train.py") == []
    package_private = "from ganforge import _requests\n"
    assert private_violations(package_private, module="ganforge.client", shown="c.py") == []
    assert private_violations(package_private, module="tests.t", shown="t.py") == ["t.py:1 imports ganforge._requests"]


def test_store_and_layout_load_without_torch() -> None:
    """store/ (and the run-folder layout it builds on) import no torch: the API process stays light."""
    import subprocess
    import sys

    code = "import sys, store.layout, store.models, store.db, store.settings; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
