"""The package's shape: rooms small enough to read alone, walls that private names do not cross.

A static check with `ast` (no import of the modules, no new dependency): every module of `nbmcp/` is
at most MAX_MODULE_LINES lines, every class at most MAX_CLASS_LINES, every function at most
MAX_FUNCTION_LINES; no module imports a `_private` name from another module of the package; and each
layer imports only from the layers before it in LAYERS.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import nbmcp

PACKAGE = Path(nbmcp.__file__).parent
MAX_MODULE_LINES = 600
MAX_CLASS_LINES = 400
MAX_FUNCTION_LINES = 100
#: The layers (folders of nbmcp, and errors.py and web.py), in order: a layer imports only from those
#: before it. `config.py` is left out: the settings gather the defaults of every layer they configure.
LAYERS = ("errors", "web", "jupyter", "notebook", "kernels", "session", "ci", "view", "server", "cli")


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _name(path: Path) -> str:
    return str(path.relative_to(PACKAGE.parent))


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _imported_module(path: Path, node: ast.ImportFrom) -> str | None:
    """The dotted module an import takes names from, if it is part of nbmcp (else None)."""
    if node.level == 0:
        return node.module if node.module and (node.module == "nbmcp" or node.module.startswith("nbmcp.")) else None
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = parts[:-1]  # the package of a module, and of a package's __init__ the package itself
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def size_problems(path: Path) -> list[str]:
    """What in one module exceeds the size limits, one line each."""
    source = path.read_text(encoding="utf-8")
    problems = []
    lines = len(source.splitlines())
    if lines > MAX_MODULE_LINES:
        problems.append(f"{_name(path)}: {lines} lines (at most {MAX_MODULE_LINES})")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            limit = MAX_CLASS_LINES if isinstance(node, ast.ClassDef) else MAX_FUNCTION_LINES
            if length > limit:
                kind = "class" if isinstance(node, ast.ClassDef) else "function"
                problems.append(f"{_name(path)}:{node.lineno}: {kind} {node.name} is {length} lines (at most {limit})")
    return problems


def private_imports(path: Path) -> list[str]:
    """`_private` names this module imports from another module of nbmcp, one line each."""
    problems = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and _imported_module(path, node) is not None:
            problems += [
                f"{_name(path)}:{node.lineno}: imports {alias.name} from {_imported_module(path, node)}"
                for alias in node.names
                if _is_private(alias.name)
            ]
    return problems


def layer_problems(path: Path) -> list[str]:
    """Imports of this module that reach a later layer than its own, one line each."""
    own = _layer(".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts))
    if own not in LAYERS:
        return []
    problems = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        target = _imported_module(path, node) if isinstance(node, ast.ImportFrom) else None
        other = _layer(target) if target else None
        if other in LAYERS and LAYERS.index(other) > LAYERS.index(own):
            problems.append(
                f"{_name(path)}:{node.lineno}: the {own} layer imports from the later {other} layer ({target})"
            )
    return problems


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_the_check_sees_every_module() -> None:
    names = {_name(p) for p in _modules()}
    assert {"nbmcp/__init__.py", "nbmcp/session/session.py", "nbmcp/server/tools/registry.py"} <= names


@pytest.mark.parametrize("path", _modules(), ids=_name)
def test_rooms_are_small_enough_to_read_alone(path: Path) -> None:
    assert size_problems(path) == []


@pytest.mark.parametrize("path", _modules(), ids=_name)
def test_no_private_name_crosses_a_module_wall(path: Path) -> None:
    assert private_imports(path) == []


@pytest.mark.parametrize("path", _modules(), ids=_name)
def test_each_layer_imports_only_from_the_layers_before_it(path: Path) -> None:
    assert layer_problems(path) == []


def test_the_checks_fail_on_what_they_forbid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The checks above would catch a large room and a leaky wall (so their passing means something)."""
    fake = tmp_path / "nbmcp"
    (fake / "core").mkdir(parents=True)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    big = fake / "core" / "big.py"
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES + 1))
    big.write_text(f"def f():\n{body}\n" + "\n" * MAX_MODULE_LINES, encoding="utf-8")
    (fake / "session").mkdir()
    upward = fake / "session" / "upward.py"
    upward.write_text("from ..notebook.store import LocalStore\nfrom ..server.render import render\n", encoding="utf-8")
    assert layer_problems(upward) == [
        "nbmcp/session/upward.py:2: the session layer imports from the later server layer (nbmcp.server.render)"
    ]
    leaky = fake / "core" / "leaky.py"
    leaky.write_text(
        "from .big import _secret\nfrom ..errors import __all__, UsageError\nfrom nbmcp.cli.main import _parser\n"
        "from os import _exit\n",
        encoding="utf-8",
    )
    assert [p.split(": ", 1)[1] for p in size_problems(big)] == [
        f"{MAX_FUNCTION_LINES + 2 + MAX_MODULE_LINES} lines (at most {MAX_MODULE_LINES})",
        f"function f is {MAX_FUNCTION_LINES + 2} lines (at most {MAX_FUNCTION_LINES})",
    ]
    assert private_imports(leaky) == [
        "nbmcp/core/leaky.py:1: imports _secret from nbmcp.core.big",
        "nbmcp/core/leaky.py:3: imports _parser from nbmcp.cli.main",
    ]


def test_the_public_api_imports_from_the_package() -> None:
    from nbmcp import (  # noqa: F401 (importing them is the test)
        CellExecutionError,
        CellIndexError,
        CellNotFoundError,
        ContentsStore,
        KernelError,
        LocalStore,
        NbmcpError,
        Notebook,
        NotebookSession,
        RemoteKernel,
        UsageError,
    )

    for name in nbmcp.__all__:
        assert getattr(nbmcp, name) is not None, name
    assert issubclass(CellIndexError, IndexError) and issubclass(UsageError, ValueError)
    assert NotebookSession.__module__ == "nbmcp.session.session"
    assert importlib.import_module("nbmcp.errors").NbmcpError is NbmcpError


def test_importing_the_command_line_does_not_load_the_notebook_stack() -> None:
    """`import nbmcp` stays cheap: the public names load on first use, so a server answers `initialize` early."""
    code = "import sys, nbmcp; print(sorted(m for m in ('nbformat', 'jupyter_client', 'httpx2') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.strip() == "[]"
