"""The local store on a real file system: format, atomic writes, external changes, bad files."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import nbformat
import pytest
from filelock import FileLock

from nbmcp.errors import LockTimeoutError, NotebookFormatError
from nbmcp.notebook.atomic import TEMP_MARKER, discards_done
from nbmcp.notebook.encoder import dumps_notebook
from nbmcp.notebook.store import LocalStore, lock_dir, new_notebook

from .conftest import read_nb


def add_cell(source: str):  # type: ignore[no-untyped-def]
    return lambda nb: nb.cells.append(nbformat.v4.new_code_cell(source))


def test_created_notebook_is_valid_4_5_and_formatted_like_jupyter(nb_path: Path) -> None:
    store = LocalStore(nb_path)
    assert store.create_if_missing() is True
    assert store.create_if_missing() is False
    nb = read_nb(nb_path)
    assert (nb.nbformat, nb.nbformat_minor) == (4, 5)
    text = nb_path.read_text()
    assert text.endswith("}\n")
    assert text.startswith('{\n "cells": [],\n "metadata": {\n')  # indent 1, sorted keys
    assert text == json.dumps(json.loads(text), indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def test_edit_writes_atomically_and_keeps_the_file_mode(nb_path: Path) -> None:
    store = LocalStore(nb_path)
    store.create_if_missing()
    os.chmod(nb_path, 0o640)
    store.edit(add_cell("x = 1"))
    assert stat.S_IMODE(os.stat(nb_path).st_mode) == 0o640
    assert read_nb(nb_path).cells[0].source == "x = 1"
    assert discards_done()  # the file the save replaced is deleted after the save returns
    assert sorted(p.name for p in nb_path.parent.iterdir()) == ["notebook.ipynb"]


def test_edit_writes_through_a_symlink_to_its_target(tmp_path: Path) -> None:
    target = tmp_path / "real.ipynb"
    nbformat.write(new_notebook(), target)
    link = tmp_path / "work" / "link.ipynb"
    link.symlink_to(target)
    LocalStore(link).edit(add_cell("via link"))
    assert link.is_symlink()
    assert read_nb(target).cells[0].source == "via link"


def test_external_change_is_seen_by_the_next_read_and_kept_by_the_next_edit(nb_path: Path) -> None:
    store = LocalStore(nb_path)
    store.create_if_missing()
    store.edit(add_cell("ours 1"))
    nb = nbformat.read(nb_path, 4)
    nb.cells.append(nbformat.v4.new_markdown_cell("theirs"))
    nbformat.write(nb, nb_path)  # in place, same second, maybe the same size class
    assert [c.source for c in store.read().cells] == ["ours 1", "theirs"]
    store.edit(add_cell("ours 2"))
    assert [c.source for c in read_nb(nb_path).cells] == ["ours 1", "theirs", "ours 2"]


def test_external_change_by_rename_is_seen(nb_path: Path) -> None:
    store = LocalStore(nb_path)
    store.create_if_missing()
    store.read()
    nb = new_notebook()
    nb.cells.append(nbformat.v4.new_code_cell("renamed in"))
    tmp = nb_path.with_name("other.tmp")
    nbformat.write(nb, tmp)
    os.replace(tmp, nb_path)
    assert [c.source for c in store.read().cells] == ["renamed in"]


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"", "empty"),
        (b'{"cells": [', "not JSON"),
        (b'{"hello": "world"}', "nbformat"),
        (b"\xff\xfe", "UTF-8"),
    ],
)
def test_a_file_that_is_not_a_notebook_is_an_error_and_left_untouched(
    nb_path: Path, content: bytes, reason: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("nbmcp.notebook.store.PARSE_RETRY_SECONDS", 0.2)
    nb_path.write_bytes(content)
    store = LocalStore(nb_path)
    with pytest.raises(NotebookFormatError, match=reason):
        store.read()
    with pytest.raises(NotebookFormatError):
        store.edit(add_cell("never written"))
    assert nb_path.read_bytes() == content


def test_a_4_4_notebook_without_ids_reads(tmp_path: Path) -> None:
    from .conftest import copy_golden

    path = copy_golden("v44_no_ids.ipynb", tmp_path / "old.ipynb")
    before = path.read_bytes()
    nb = LocalStore(path).read()
    assert nb.nbformat_minor == 4 and "id" not in nb.cells[0]
    assert path.read_bytes() == before


def test_failed_edit_writes_nothing_and_drops_the_half_applied_change(nb_path: Path) -> None:
    store = LocalStore(nb_path)
    store.create_if_missing()
    before = nb_path.read_bytes()

    def bad(nb: nbformat.NotebookNode) -> None:
        nb.cells.append(nbformat.v4.new_code_cell("half"))
        raise ValueError("boom")

    with pytest.raises(ValueError):
        store.edit(bad)
    assert nb_path.read_bytes() == before
    assert store.read().cells == []


def test_lock_held_by_another_writer_gives_a_clear_timeout(nb_path: Path) -> None:
    store = LocalStore(nb_path, lock_timeout=0.3)
    store.create_if_missing()
    lock_file = next(lock_dir().glob("*.lock"))
    other = FileLock(lock_file, thread_local=False)  # another holder: its own open file
    with other, pytest.raises(LockTimeoutError, match=r"could not lock .* within 0\.3 s"):
        store.edit(add_cell("blocked"))
    store.edit(add_cell("after"))
    assert [c.source for c in read_nb(nb_path).cells] == ["after"]


def test_stale_temp_files_are_removed_on_start(nb_path: Path) -> None:
    nbformat.write(new_notebook(), nb_path)
    leftover = nb_path.parent / f".{nb_path.name}.abc123{TEMP_MARKER}"
    leftover.write_text("{half")
    LocalStore(nb_path).create_if_missing()
    assert not leftover.exists()


def test_a_file_caught_mid_write_is_retried_until_it_parses(nb_path: Path) -> None:
    import threading

    nb = new_notebook()
    nb.cells.append(nbformat.v4.new_code_cell("complete"))
    full = dumps_notebook(nb)
    nb_path.write_bytes(full[: len(full) // 2])  # an editor half-way through its write
    timer = threading.Timer(0.3, nb_path.write_bytes, args=(full,))
    timer.start()
    try:
        assert [c.source for c in LocalStore(nb_path).read().cells] == ["complete"]
    finally:
        timer.join()


def test_dumps_matches_nbformat_write(nb_path: Path) -> None:
    nb = new_notebook()
    nb.cells.append(nbformat.v4.new_markdown_cell("héllo"))
    nbformat.write(nb, nb_path)
    assert dumps_notebook(nb) == nb_path.read_bytes()


def test_writable_notebook_in_a_read_only_folder_is_still_saved(tmp_path: Path) -> None:
    import subprocess

    folder = tmp_path / "ro"
    folder.mkdir()
    path = folder / "nb.ipynb"
    nbformat.write(new_notebook(), path)
    store = LocalStore(path)
    if os.geteuid() == 0:
        # Root may write into any folder whatever its mode; an immutable folder refuses even root
        # a new entry while its files stay writable.
        subprocess.run(["chattr", "+i", str(folder)], check=True)
        undo = ["chattr", "-i", str(folder)]
    else:
        os.chmod(folder, 0o555)
        undo = ["chmod", "755", str(folder)]
    try:
        store.edit(add_cell("saved in place"))
    finally:
        subprocess.run(undo, check=True)
    assert [c.source for c in read_nb(path).cells] == ["saved in place"]
    assert sorted(p.name for p in folder.iterdir()) == ["nb.ipynb"]


@pytest.mark.timeout(30)
def test_a_fifo_named_like_a_notebook_is_refused_at_once(nb_path: Path) -> None:
    """Only regular files are notebooks: a FIFO would block the open forever (issue 13)."""
    nb_path.parent.mkdir(exist_ok=True)
    os.mkfifo(nb_path)
    store = LocalStore(nb_path)
    assert store.create_if_missing() is False  # something is there: nothing is created over it
    for call in (store.read, lambda: store.edit(add_cell("x"))):
        with pytest.raises(NotebookFormatError, match="not a regular file \\(a FIFO\\)"):
            call()
    assert stat.S_ISFIFO(os.stat(nb_path).st_mode)  # left as it was


@pytest.mark.timeout(30)
def test_a_folder_named_like_a_notebook_is_refused(nb_path: Path) -> None:
    nb_path.mkdir(parents=True)
    with pytest.raises(NotebookFormatError, match="a folder"):
        LocalStore(nb_path).read()


def test_creating_the_notebook_never_replaces_one_made_meanwhile(
    nb_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The server opens (and creates) its notebook after answering `initialize` (issue 14): a file
    # another program wrote in between must be kept, not replaced by an empty notebook.
    store = LocalStore(nb_path)
    theirs = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("theirs = 1")])
    real_exists = Path.exists

    def exists_then_someone_writes(self: Path) -> bool:
        found = real_exists(self)
        if self == store.path and not found:
            nbformat.write(theirs, nb_path)  # between our look and our write
        return found

    monkeypatch.setattr(Path, "exists", exists_then_someone_writes)
    assert store.create_if_missing() is False
    monkeypatch.undo()
    assert nbformat.read(nb_path, as_version=4).cells[0].source == "theirs = 1"
    assert store.read().cells[0].source == "theirs = 1"
    assert not list(nb_path.parent.glob(f"*{TEMP_MARKER}"))


def test_the_file_a_large_save_replaced_is_deleted_after_the_save_returns(nb_path: Path) -> None:
    nb = new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("x" * 1000) for _ in range(2000)]  # 2 MB
    nbformat.write(nb, nb_path)
    store = LocalStore(nb_path)
    for k in range(3):
        store.edit(lambda nb, k=k: nb.cells.__setitem__(7, nbformat.v4.new_markdown_cell(f"edit {k}")))
    assert discards_done()
    assert not list(nb_path.parent.glob(f"*{TEMP_MARKER}"))
    assert nbformat.read(nb_path, as_version=4).cells[7].source == "edit 2"
