"""Path confinement: every way out of the served folder is refused before any I/O on a notebook."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nbmcp.errors import PathError
from nbmcp.server.paths import confine, relative_name


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    (root / "sub").mkdir(parents=True)
    (tmp_path / "proj-evil").mkdir()
    (tmp_path / "outside").mkdir()
    (root / "escape").symlink_to(tmp_path / "outside")
    (root / "inner-link").symlink_to(root / "sub")
    return root


@pytest.mark.parametrize(
    "user_path, reason",
    [
        ("../outside/x.ipynb", "'..' is not allowed"),
        ("sub/../../outside/x.ipynb", "'..' is not allowed"),
        ("sub\\..\\..\\x.ipynb", "'..' is not allowed"),
        ("/etc/passwd.ipynb", "outside the served folder"),
        ("PROJ_EVIL", "outside the served folder"),
        ("escape/x.ipynb", "outside the served folder"),
        ("nul\x00.ipynb", "NUL byte"),
        ("", "empty"),
        ("notes.txt", "only .ipynb files"),
    ],
)
def test_ways_out_are_refused(root: Path, user_path: str, reason: str) -> None:
    if user_path == "PROJ_EVIL":
        user_path = str(root.parent / "proj-evil" / "x.ipynb")  # a sibling whose name starts with the root's
    with pytest.raises(PathError, match=reason):
        confine(root, user_path)
    assert not list(root.parent.glob("**/x.ipynb"))


@pytest.mark.parametrize("user_path", ["a.ipynb", "sub/b.ipynb", "./sub/c.ipynb", "inner-link/d.ipynb"])
def test_paths_inside_are_accepted(root: Path, user_path: str) -> None:
    path = confine(root, user_path)
    assert path.is_absolute()
    assert os.path.commonpath([os.path.realpath(root), os.path.realpath(path)]) == os.path.realpath(root)


def test_absolute_path_inside_root_is_accepted(root: Path) -> None:
    assert confine(root, str(root / "sub" / "e.ipynb")) == root / "sub" / "e.ipynb"


def test_relative_name(root: Path) -> None:
    assert relative_name(root, root / "sub" / "b.ipynb") == "sub/b.ipynb"
