"""The fast serializer writes exactly the bytes nbformat writes (formatted like Jupyter)."""

from __future__ import annotations

import copy
import math
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbformat import NotebookNode

from nbmcp.notebook import encoder as store
from nbmcp.notebook.encoder import IncrementalWriter, _encode, _for_disk, dumps_notebook
from nbmcp.notebook.reader import parse_notebook
from nbmcp.notebook.store import new_notebook
from nbmcp.session.session import NotebookSession

from .bench.notebooks import make_notebook

ROOT = Path(__file__).parent.parent


def nbformat_bytes(nb: NotebookNode) -> bytes:
    """What Jupyter writes: nbformat.v4.writes plus the trailing newline nbformat.write adds."""
    return (nbformat.v4.writes(nb) + "\n").encode("utf-8")


def round_trip(nb: NotebookNode) -> NotebookNode:
    """The notebook as nbmcp holds it after reading it from a file."""
    return nbformat.reads(nbformat.v4.writes(nb), as_version=4)


def tricky_notebook() -> NotebookNode:
    nb = new_notebook()
    nb.metadata["orig_nbformat"] = 3  # transient: never written
    nb.metadata["signature"] = "sha256:..."
    nb.metadata["numbers"] = {
        "float": 0.1,
        "big": 10**30,
        "huge_float": 1e16,
        "neg_zero": -0.0,
        "tiny": 5e-324,
        "bool": True,
        "int": 1,
        "none": None,
        "nan": math.nan,
        "inf": math.inf,
        "ninf": -math.inf,
        "tuple": (1, "a"),
    }
    nb.metadata["nested"] = {"empty_dict": {}, "empty_list": [], "deep": [[{"b": 1, "a": [2, {}]}]]}
    nb.metadata["text"] = 'quotes " back\\slash \x00\x1f\x7f tab\t é ü 中文 😀 \u2028 \u2029 </script>'
    md = nbformat.v4.new_markdown_cell("# Title\r\nwindows line\rold mac line\n\nend without newline")
    md.attachments = {"a.png": {"image/png": "iVBORw0KGgo=", "text/plain": "line 1\nline 2\n"}}
    md.metadata["trusted"] = True  # transient
    code = nbformat.v4.new_code_cell(["already ", "split\n", "source"], execution_count=3)
    code.metadata = {"tags": ["a", "b"], "collapsed": False, "scrolled": "auto"}
    code.outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="a\nb\n\nc"),
        nbformat.v4.new_output("stream", name="stderr", text=["kept\n", "as a list"]),
        nbformat.v4.new_output(
            "execute_result",
            execution_count=3,
            data={
                "text/plain": "x\ny",
                "text/html": "<b>\n</b>",
                "image/svg+xml": "<svg>\n</svg>",
                "application/javascript": "f()\ng()",
                "application/json": {"k": ["v\nw"]},
                "application/vnd.custom+json": {"z": 1, "a": 2},
                "image/png": "iVBOR\nw0KGgo=",
            },
            metadata={"image/png": {"width": 10}},
        ),
        nbformat.v4.new_output("display_data", data={}),
        nbformat.v4.new_output("error", ename="E", evalue="v", traceback=["\x1b[31mred\x1b[0m", "2"]),
    ]
    empty = nbformat.v4.new_code_cell("")
    raw = nbformat.v4.new_raw_cell("raw\ntext")
    nb.cells = [md, code, empty, raw]
    return nb


@pytest.mark.parametrize("cells", [0, 1, 50, 400])
def test_generated_notebooks_are_byte_identical(cells: int) -> None:
    nb = round_trip(make_notebook(cells, seed=cells))
    assert dumps_notebook(nb) == nbformat_bytes(nb)


def test_tricky_values_are_byte_identical() -> None:
    nb = tricky_notebook()
    assert dumps_notebook(nb) == nbformat_bytes(nb)
    nb = round_trip(nb)  # as read from a file: strings rejoined, transients gone
    assert dumps_notebook(nb) == nbformat_bytes(nb)


@pytest.mark.parametrize("name", ["tests/files/v44_no_ids.ipynb", "examples/demo.ipynb"])
def test_committed_notebooks_are_byte_identical(name: str, nb_path: Path) -> None:
    nb = nbformat.read(ROOT / name, as_version=4)
    nbformat.write(nb, nb_path)
    assert dumps_notebook(nb) == nb_path.read_bytes()


def test_the_in_memory_notebook_is_not_changed() -> None:
    nb = tricky_notebook()
    before = nbformat.v4.writes(nb)
    dumps_notebook(nb)
    assert nbformat.v4.writes(nb) == before
    assert isinstance(nb.cells[0].source, str) and "trusted" in nb.cells[0].metadata


@pytest.mark.parametrize("value", [b"YWJj", {1: "int key"}, {"set": {1, 2}}], ids=["bytes", "int-key", "set"])
def test_what_the_fast_encoder_does_not_know_goes_to_nbformat(value: object) -> None:
    nb = new_notebook()
    nb.metadata["odd"] = value
    with pytest.raises(TypeError):
        _encode(_for_disk(nb), "\n")
    try:
        expected: bytes | type[Exception] = nbformat_bytes(nb)
    except TypeError:
        expected = TypeError
    if expected is TypeError:
        with pytest.raises(TypeError):
            dumps_notebook(nb)
    else:
        assert dumps_notebook(nb) == expected


def test_a_broken_notebook_fails_as_nbformat_fails() -> None:
    nb = new_notebook()
    nb.cells.append(NotebookNode({"source": "no cell_type"}))
    with pytest.raises(AttributeError):
        nbformat.v4.writes(nb)
    with pytest.raises(AttributeError):
        dumps_notebook(nb)


# -- issue 14: only changed cells are re-encoded, and the bytes stay nbformat's ---------------------


def _changes() -> list[tuple[str, Callable[[NotebookNode], object]]]:
    """Edits of every shape, in place and nested, as a session or a person's script might make them."""
    return [
        ("overwrite a source", lambda nb: nb.cells[3].__setitem__("source", "x = 1\ny = 2")),
        ("append a tag (nested, in place)", lambda nb: nb.cells[5].metadata.setdefault("tags", []).append("t")),
        ("edit an output's text in place", lambda nb: _first_stream(nb).__setitem__("text", "changed\n")),
        ("append an output", lambda nb: _first_code(nb).outputs.append(_stream("more\n"))),
        ("clear outputs", lambda nb: _first_code(nb).__setitem__("outputs", [])),
        ("insert a cell", lambda nb: nb.cells.insert(7, nbformat.v4.new_markdown_cell("# new"))),
        ("delete a cell", lambda nb: nb.cells.pop(2)),
        ("move a cell", lambda nb: nb.cells.insert(0, nb.cells.pop(10))),
        ("swap two cells", lambda nb: nb.cells.__setitem__(slice(1, 3), [nb.cells[2], nb.cells[1]])),
        ("replace a cell by an equal copy", lambda nb: nb.cells.__setitem__(4, copy.deepcopy(nb.cells[4]))),
        ("top-level metadata", lambda nb: nb.metadata.__setitem__("title", "T")),
        ("nested top-level metadata, in place", lambda nb: nb.metadata.setdefault("kernelspec", {}).update(name="k")),
        ("transient metadata", lambda nb: nb.cells[6].metadata.__setitem__("trusted", True)),
        ("a unicode source", lambda nb: nb.cells[8].__setitem__("source", "é \u2028 \U0001f600 \x00")),
        ("an execution count", lambda nb: _first_code(nb).__setitem__("execution_count", 99)),
        ("delete every cell", lambda nb: nb.cells.clear()),
        ("add one back", lambda nb: nb.cells.append(nbformat.v4.new_code_cell("1"))),
    ]


def _first_code(nb: NotebookNode) -> NotebookNode:
    return next(c for c in nb.cells if c.cell_type == "code")


def _first_stream(nb: NotebookNode) -> NotebookNode:
    return next(o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "stream")


def _stream(text: str) -> NotebookNode:
    return nbformat.v4.new_output("stream", name="stdout", text=text)


def test_incremental_writes_stay_byte_identical_through_every_kind_of_change() -> None:
    nb = round_trip(make_notebook(60, seed=14))
    writer = IncrementalWriter()
    assert writer.dumps(nb) == nbformat_bytes(nb)
    for name, change in _changes():
        change(nb)
        assert writer.dumps(nb) == nbformat_bytes(nb), name
        assert writer.dumps(nb) == nbformat_bytes(nb), f"{name}, written twice"


def test_incremental_writes_reencode_only_the_changed_cell(monkeypatch: pytest.MonkeyPatch) -> None:
    nb = round_trip(make_notebook(200, seed=3))
    writer = IncrementalWriter()
    writer.dumps(nb)
    encoded: list[object] = []
    real = store._cell_for_disk

    def spy(cell: NotebookNode) -> dict[str, Any]:
        encoded.append(cell)
        return real(cell)

    monkeypatch.setattr(store, "_cell_for_disk", spy)
    frames: list[object] = []
    real_frame = store._frame
    monkeypatch.setattr(store, "_frame", lambda nb, minor=None: frames.append(nb) or real_frame(nb, minor))
    nb.cells[100]["source"] = "changed"
    nb.cells.insert(50, nbformat.v4.new_markdown_cell("# new"))
    assert writer.dumps(nb) == nbformat_bytes(nb)
    assert encoded == [nb.cells[50], nb.cells[101]]
    assert frames == []  # the top level is unchanged: its bytes are reused (issue 23)


def test_the_fast_parse_reads_what_nbformat_reads() -> None:
    for nb in (round_trip(make_notebook(80, seed=5)), round_trip(tricky_notebook())):
        data = nbformat_bytes(nb)
        ours = parse_notebook(data, Path("x.ipynb"))
        assert ours == nbformat.reads(data.decode(), as_version=4)
        assert isinstance(ours.cells[0], NotebookNode) and isinstance(ours.cells[0].source, str)


def test_a_notebook_of_another_shape_goes_through_nbformat() -> None:
    nb = round_trip(make_notebook(5, seed=1))
    nb.cells[0]["cell_type"] = "heading"  # not a v4 cell type: nbformat decides (and warns)
    data = nbformat_bytes(nb)
    assert parse_notebook(data, Path("x.ipynb")) == nbformat.reads(data.decode(), as_version=4)


def test_writes_told_which_cells_changed_stay_byte_identical() -> None:
    nb = round_trip(make_notebook(60, seed=15))
    writer = IncrementalWriter()
    writer.dumps(nb)
    for name, change in _changes():
        before = {id(c): copy.deepcopy(c) for c in nb.cells}
        change(nb)
        # What a session's edit says: the cells it changed in place (added ones need not be named).
        changed = {id(c) for c in nb.cells if id(c) in before and before[id(c)] != c}
        assert writer.dumps(nb, changed) == nbformat_bytes(nb), name
        assert writer.dumps(nb, set()) == nbformat_bytes(nb), f"{name}, written twice"


def test_a_write_told_of_no_change_reuses_every_cell_it_was_not_told_of(monkeypatch: pytest.MonkeyPatch) -> None:
    nb = round_trip(make_notebook(50, seed=16))
    writer = IncrementalWriter()
    writer.dumps(nb)
    encoded: list[object] = []
    real = store._cell_for_disk
    monkeypatch.setattr(store, "_cell_for_disk", lambda cell: encoded.append(cell) or real(cell))
    nb.cells[10]["source"] = "told"
    nb.cells[20]["source"] = "not told"  # a broken promise shows: the cell keeps its old bytes
    data = writer.dumps(nb, {id(nb.cells[10])})
    assert encoded == [nb.cells[10]]
    assert b'"told"' in data and b'"not told"' not in data


@pytest.mark.anyio
async def test_session_edits_reencode_only_the_cells_they_touch(nb_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nbformat.write(make_notebook(40, seed=17), nb_path)
    session = NotebookSession(nb_path)
    await session.open(start_kernel=False)
    await session.overwrite_source(0, "warm")  # the first edit gives cells ids if needed
    encoded: list[str] = []
    real = store._cell_for_disk
    monkeypatch.setattr(store, "_cell_for_disk", lambda cell: encoded.append(cell["id"]) or real(cell))
    told: list[object] = []  # what each edit told the writer: a set of cells, not None (compare them all)
    real_encode = IncrementalWriter.encode
    monkeypatch.setattr(
        IncrementalWriter, "encode", lambda w, nb, changed=None: told.append(changed) or real_encode(w, nb, changed)
    )
    nb = session.store.read()
    edits: list[tuple[Callable[[], Awaitable[object]], Callable[[], list[str]]]] = [
        (lambda: session.overwrite_source(5, "x = 5"), lambda: [nb.cells[5]["id"]]),
        (lambda: session.edit_source(5, "5", "6"), lambda: [nb.cells[5]["id"]]),
        (lambda: session.insert_cell(7, "markdown", "# new"), lambda: [nb.cells[7]["id"]]),
        (lambda: session.delete_cell(7), lambda: []),
        (lambda: session.move_cell(3, 9), lambda: []),
        (lambda: session.clear_outputs(_code_index(nb)), lambda: [nb.cells[_code_index(nb)]["id"]]),
    ]
    for edit, expected in edits:
        encoded.clear()
        told.clear()
        await edit()
        assert session.store.read() is nb
        assert encoded == expected()
        assert len(told) == 1 and isinstance(told[0], set)
        assert nb_path.read_bytes() == nbformat_bytes(nbformat.read(nb_path, as_version=4))
        assert nbformat.read(nb_path, as_version=4) == nb
    await session.close()


def _code_index(nb: NotebookNode) -> int:
    return next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
