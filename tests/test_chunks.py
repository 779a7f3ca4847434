"""`Chunks` (a file's bytes as slices, never joined) and the writer that builds them (issue 14)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest
from nbformat import NotebookNode

from nbmcp.notebook import encoder as store_module
from nbmcp.notebook.chunks import BLOCK, Chunks
from nbmcp.notebook.encoder import IncrementalWriter, dumps_notebook, mark_changed
from nbmcp.notebook.reader import parse_notebook
from nbmcp.notebook.store import LocalStore

from .bench.notebooks import make_notebook

BIG = bytes(range(256)) * (3 * BLOCK // 256 + 7)  # spans several comparison blocks, not a multiple of one


def _chunks() -> Chunks:
    # Slices of two buffers, one crossing a block boundary, plus an empty one (dropped).
    return Chunks([(BIG, 0, BLOCK + 5), (b"-mid-", 0, 5), (BIG, 10, 10), (BIG, BLOCK + 5, len(BIG))])


def _expected() -> bytes:
    return BIG[: BLOCK + 5] + b"-mid-" + BIG[BLOCK + 5 :]


def _holds(path: Path, chunks: Chunks) -> bool:
    fd = os.open(path, os.O_RDONLY)
    try:
        return chunks.same_as_file(fd)
    finally:
        os.close(fd)


def test_chunks_join_write_and_compare_as_the_bytes_they_stand_for(tmp_path: Path) -> None:
    chunks, expected = _chunks(), _expected()
    assert len(chunks) == len(expected) and len(chunks.parts) == 3
    assert chunks.tobytes() == expected
    assert chunks.same_as(expected)
    path = tmp_path / "f"
    with open(path, "wb", buffering=1 << 12) as f:
        chunks.write_to(f)
    assert path.read_bytes() == expected
    assert _holds(path, chunks)


@pytest.mark.parametrize("where", [0, BLOCK - 1, BLOCK + 5, 2 * BLOCK + 3, len(BIG) + 4])
def test_one_changed_byte_anywhere_is_found(tmp_path: Path, where: int) -> None:
    chunks, expected = _chunks(), bytearray(_expected())
    expected[where] ^= 0xFF
    path = tmp_path / "f"
    path.write_bytes(expected)
    assert not chunks.same_as(bytes(expected))
    assert not _holds(path, chunks)


def test_a_longer_or_shorter_file_is_not_the_same(tmp_path: Path) -> None:
    chunks, expected = _chunks(), _expected()
    path = tmp_path / "f"
    for other in (expected + b"\n", expected[:-1], b""):
        path.write_bytes(other)
        assert not _holds(path, chunks)
        assert not chunks.same_as(other)


def test_many_changed_cells_are_joined_into_one_image_and_later_writes_stay_exact() -> None:
    nb = parse_notebook(dumps_notebook(make_notebook(700, seed=21)), Path("x.ipynb"))
    writer = IncrementalWriter()
    first = writer.encode(nb)
    assert len(first.parts) == 1  # every cell was encoded: joined at once
    for cell in nb.cells[::2]:  # 350 cells changed: 700 slices, more than MAX_RUNS
        cell["source"] = "changed " + cell["source"]
    many = writer.encode(nb)
    assert many.tobytes() == nbformat.v4.writes(nb).encode() + b"\n"
    assert len(many.parts) == 1
    nb.cells[300]["source"] = "one more"
    nb.cells.insert(10, nbformat.v4.new_markdown_cell("# new"))
    one = writer.encode(nb, {id(nb.cells[301])})
    assert one.tobytes() == nbformat.v4.writes(nb).encode() + b"\n"
    # opening, the image in three runs around the two new cells, four separators, closing
    assert len(one.parts) == 11


def test_edits_in_place_one_after_another_stay_exact_through_the_joins() -> None:
    nb = parse_notebook(dumps_notebook(make_notebook(120, seed=22)), Path("x.ipynb"))
    writer = IncrementalWriter()
    writer.encode(nb)
    for k in range(IncrementalWriter.MAX_RUNS):  # past MAX_RUNS runs: joined again along the way
        cell = nb.cells[(k * 37) % len(nb.cells)]
        cell["source"] = f"edit {k}"
        chunks = writer.encode(nb, {id(cell)})
        if k % 16 == 0 or k == IncrementalWriter.MAX_RUNS - 1:
            assert chunks.tobytes() == nbformat.v4.writes(nb).encode() + b"\n", k
        assert len(chunks.parts) <= 2 * IncrementalWriter.MAX_RUNS + 1


def _tricky(n: int) -> NotebookNode:
    nb = make_notebook(n, seed=23)
    nb.cells[3] = nbformat.v4.new_markdown_cell('  },\n  {\n"cells": [\n  }\n  ]\n}\n')  # the layout's text, in a cell
    return nb


def test_a_file_in_nbformats_layout_seeds_the_writer_so_the_first_edit_encodes_one_cell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "n.ipynb"
    nbformat.write(_tricky(300), path)
    store = LocalStore(path)
    nb = store.read()
    again = store._writer.encode(nb, set())  # nothing changed: the file's own bytes, cells in one slice
    assert again.tobytes() == path.read_bytes()
    assert len(again.parts) == 3 and again.parts[1][0] is store._data.parts[0][0]  # type: ignore[union-attr]
    encoded: list[object] = []
    real = store_module._cell_for_disk
    monkeypatch.setattr(store_module, "_cell_for_disk", lambda cell: encoded.append(cell) or real(cell))

    def change(nb: NotebookNode) -> None:
        mark_changed(nb.cells[150])
        nb.cells[150]["source"] = "changed"

    store.edit(change)
    assert encoded == [store.read().cells[150]]
    assert path.read_bytes() == nbformat.writes(nbformat.read(path, as_version=4)).encode() + b"\n"
    assert nbformat.read(path, as_version=4).cells[3].source.startswith("  },\n  {")


@pytest.mark.parametrize("layout", ["indent 2", "unsorted keys", "no trailing newline"])
def test_a_file_in_another_layout_is_encoded_whole_and_saved_in_nbformats(tmp_path: Path, layout: str) -> None:
    nb = _tricky(40)
    if layout == "indent 2":
        text = json.dumps(nb, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    elif layout == "unsorted keys":
        text = json.dumps({"nbformat_minor": nb.nbformat_minor, **nb}, indent=1, ensure_ascii=False) + "\n"
    else:
        text = nbformat.writes(nb)
    path = tmp_path / "n.ipynb"
    path.write_text(text, encoding="utf-8")
    writer = IncrementalWriter()
    parsed = parse_notebook(path.read_bytes(), path)
    assert writer.seed(parsed, path.read_bytes()) is False
    store = LocalStore(path)
    store.edit(lambda nb: nb.cells[10].__setitem__("source", "changed"))
    assert path.read_bytes() == nbformat.writes(nbformat.read(path, as_version=4)).encode() + b"\n"
