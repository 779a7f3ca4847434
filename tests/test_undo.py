"""Undo (issue 15): the journal of nbmcp's changes, NotebookSession.undo/history, `nbmcp history|undo`.

Every test works on a real file through a real NotebookSession (the same code the MCP tools call);
the CLI runs as a real subprocess; "someone else" is a plain nbformat write, as an editor's save.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import nbformat
import pytest
from mcp import Client

from nbmcp.cli.main import cli
from nbmcp.config import Settings
from nbmcp.errors import UndoConflictError, UsageError
from nbmcp.jupyter.client import JupyterServer
from nbmcp.notebook import journal
from nbmcp.notebook.atomic import discards_done
from nbmcp.notebook.contents import ContentsStore
from nbmcp.notebook.journal import BARRIER, MAX_JOURNAL_BYTES, MAX_JOURNAL_ENTRIES, TRIM_TO, Journal, state_dir
from nbmcp.server.app import build_server
from nbmcp.session.session import NotebookSession

from .conftest import read_nb, text_of

pytestmark = pytest.mark.anyio


def _original(path: Path) -> list[dict[str, Any]]:
    """A notebook with every kind of cell, outputs, metadata and ids; returns its cells as plain dicts."""
    code = nbformat.v4.new_code_cell("x = 1\nprint(x)", execution_count=3)
    code.outputs = [nbformat.v4.new_output("stream", name="stdout", text="1\n")]
    code.metadata["tags"] = ["keep"]
    plot = nbformat.v4.new_code_cell("plot()", execution_count=4)
    plot.outputs = [
        nbformat.v4.new_output("display_data", data={"text/plain": "<Figure>", "image/png": "iVBORw0KGgo="}),
    ]
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_markdown_cell("# Title\n\nSome *text*."),
            code,
            plot,
            nbformat.v4.new_raw_cell("raw stuff"),
            nbformat.v4.new_code_cell("y = 2"),
        ]
    )
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return _cells(path)


def _cells(path: Path) -> list[dict[str, Any]]:
    return [json.loads(json.dumps(c)) for c in read_nb(path).cells]


def _external_edit(path: Path, index: int, **fields: Any) -> None:
    """Someone else (an editor, git) changes a cell and saves, without nbmcp's lock."""
    nb = nbformat.read(path, as_version=4)
    nb.cells[index].update(fields)
    nbformat.write(nb, path)


@pytest.fixture
async def session(nb_path: Path) -> AsyncIterator[NotebookSession]:
    _original(nb_path)
    s = NotebookSession(nb_path)
    await s.open(create=False, start_kernel=False)
    yield s
    await s.close()


# -- each kind of change, taken back exactly ---------------------------------------------------------


async def test_undo_insert_removes_exactly_the_inserted_cell(session: NotebookSession, nb_path: Path) -> None:
    before, data = _cells(nb_path), nb_path.read_bytes()
    ref = await session.insert_cell(2, "code", "z = 3")
    assert len(_cells(nb_path)) == 6

    result = await session.undo()

    assert [c.kind for c in result.undone] == ["insert"] and result.undone[0].cell_ids == (ref.id,)
    assert result.remaining == 0 and result.total_cells == 5
    assert _cells(nb_path) == before
    # nbmcp writes the way Jupyter does, so taking every change back gives the very same bytes.
    assert nb_path.read_bytes() == data


async def test_undo_overwrite_and_edit_restore_the_source(session: NotebookSession, nb_path: Path) -> None:
    before = _cells(nb_path)
    await session.overwrite_source(1, "x = 10")
    await session.edit_source(1, "10", "11")
    assert _cells(nb_path)[1]["source"] == "x = 11"

    result = await session.undo()
    assert [c.kind for c in result.undone] == ["edit"]
    assert _cells(nb_path)[1]["source"] == "x = 10"
    await session.undo()
    assert _cells(nb_path) == before


async def test_undo_delete_restores_the_whole_cell_in_place(session: NotebookSession, nb_path: Path) -> None:
    before = _cells(nb_path)
    await session.delete_cell(1)  # outputs, execution count, tags: all must come back
    await session.delete_cell(-1)
    assert len(_cells(nb_path)) == 3

    await session.undo(steps=2)

    assert _cells(nb_path) == before


async def test_undo_move_puts_the_cell_back(session: NotebookSession, nb_path: Path) -> None:
    before = _cells(nb_path)
    await session.move_cell(0, -1)
    await session.move_cell(3, 1)
    assert _cells(nb_path) != before

    await session.undo(steps=2)

    assert _cells(nb_path) == before


async def test_undo_clear_outputs_restores_outputs_and_counts(session: NotebookSession, nb_path: Path) -> None:
    before = _cells(nb_path)
    await session.clear_outputs(1)
    await session.clear_all_outputs()
    assert all(c.get("outputs", []) == [] for c in _cells(nb_path))

    result = await session.undo(steps=2)

    assert [c.kind for c in result.undone] == ["clear_outputs", "clear_outputs"]
    assert _cells(nb_path) == before


async def test_undo_of_many_changes_newest_first_in_one_write(session: NotebookSession, nb_path: Path) -> None:
    before = _cells(nb_path)
    a = await session.insert_cell(0, "markdown", "new top")
    await session.overwrite_source(None, "new top, edited", cell_id=a.id)
    await session.move_cell(None, 3, cell_id=a.id)
    await session.delete_cell(None, cell_id=a.id)
    await session.overwrite_source(2, "plot(dpi=50)")
    history = await session.history()
    assert [c.kind for c in history] == ["overwrite", "delete", "move", "overwrite", "insert"]
    assert [c.step for c in history] == [1, 2, 3, 4, 5]

    result = await session.undo(steps=5)

    assert [c.kind for c in result.undone] == [c.kind for c in history]
    assert _cells(nb_path) == before
    assert await session.history() == []


async def test_noop_edits_are_not_recorded(session: NotebookSession, nb_path: Path) -> None:
    await session.overwrite_source(1, "x = 1\nprint(x)")  # the same source
    await session.move_cell(2, 2)
    await session.clear_outputs(4)  # a code cell without outputs
    assert await session.history() == []
    with pytest.raises(UsageError, match="nothing to undo"):
        await session.undo()


async def test_undo_keeps_outputs_of_a_later_execution(nb_path: Path) -> None:
    _original(nb_path)
    session = NotebookSession(nb_path, timeout=60)
    await session.open(create=False)  # a real kernel
    try:
        await session.overwrite_source(4, "print('new code')")
        execution = await session.execute_cell(4)
        assert execution.ok
        await session.undo()
    finally:
        await session.close()
    cell = _cells(nb_path)[4]
    # The source goes back; the outputs are the execution's and stay (the model can run the cell again).
    assert cell["source"] == "y = 2"
    assert cell["outputs"][0]["text"] == "new code\n"


# -- never over someone else's change ------------------------------------------------------------------


async def test_undo_refuses_over_an_external_change_to_the_same_cell(session: NotebookSession, nb_path: Path) -> None:
    ref, _ = await session.overwrite_source(1, "x = 10")
    _external_edit(nb_path, 1, source="x = 99  # typed by a person")
    data = nb_path.read_bytes()

    with pytest.raises(UndoConflictError) as err:
        await session.undo()

    message = str(err.value)
    assert f"cell 1 (id {ref.id})" in message and "changed since" in message and "nothing" in message
    assert nb_path.read_bytes() == data
    assert len(await session.history()) == 1  # still recorded: nothing was undone


async def test_a_conflict_in_an_older_step_writes_nothing(session: NotebookSession, nb_path: Path) -> None:
    await session.overwrite_source(1, "x = 10")  # step 2
    await session.insert_cell(0, "markdown", "intro")  # step 1
    _external_edit(nb_path, 2, source="x = 99")  # the first change's cell, now at index 2
    data = nb_path.read_bytes()

    with pytest.raises(UndoConflictError, match="overwrote the source"):
        await session.undo(steps=2)

    assert nb_path.read_bytes() == data
    assert len(await session.history()) == 2
    # Step 1 alone touches another cell: it can still be taken back, the person's edit stays.
    await session.undo()
    assert [c["source"] for c in _cells(nb_path)][:2] == ["# Title\n\nSome *text*.", "x = 99"]


async def test_undo_keeps_external_changes_to_other_cells(session: NotebookSession, nb_path: Path) -> None:
    await session.overwrite_source(1, "x = 10")
    _external_edit(nb_path, 0, source="# Title changed by a person")
    await session.undo()
    sources = [c["source"] for c in _cells(nb_path)]
    assert sources[0] == "# Title changed by a person" and sources[1] == "x = 1\nprint(x)"


@pytest.mark.parametrize(
    ("change", "external", "reason"),
    [
        ("insert", {"source": "edited by a person"}, "changed since nbmcp inserted it"),
        ("clear", {"execution_count": 9}, "has new outputs since"),
        ("move", None, "was moved since"),
    ],
)
async def test_other_kinds_refuse_over_external_changes(
    session: NotebookSession, nb_path: Path, change: str, external: dict[str, Any] | None, reason: str
) -> None:
    if change == "insert":
        await session.insert_cell(1, "code", "z = 3")
        _external_edit(nb_path, 1, **(external or {}))
    elif change == "clear":
        await session.clear_outputs(1)
        _external_edit(nb_path, 1, **(external or {}))
    else:
        await session.move_cell(0, 2)
        nb = nbformat.read(nb_path, as_version=4)
        nb.cells.insert(0, nb.cells.pop(2))  # a person drags it back, elsewhere
        nb.cells.insert(4, nb.cells.pop(0))
        nbformat.write(nb, nb_path)
    data = nb_path.read_bytes()
    with pytest.raises(UndoConflictError, match=reason):
        await session.undo()
    assert nb_path.read_bytes() == data


async def test_undo_refuses_when_its_cell_was_deleted(session: NotebookSession, nb_path: Path) -> None:
    ref, _ = await session.overwrite_source(3, "raw, edited")
    nb = nbformat.read(nb_path, as_version=4)
    del nb.cells[3]
    nbformat.write(nb, nb_path)
    data = nb_path.read_bytes()
    with pytest.raises(UndoConflictError, match=f"cell id {ref.id}.*deleted since"):
        await session.undo()
    assert nb_path.read_bytes() == data


async def test_steps_beyond_the_journal_are_refused(session: NotebookSession, nb_path: Path) -> None:
    await session.insert_cell(0, "markdown", "a")
    data = nb_path.read_bytes()
    with pytest.raises(UsageError, match="only 1 change"):
        await session.undo(steps=2)
    with pytest.raises(UsageError, match="at least 1"):
        await session.undo(steps=0)
    assert nb_path.read_bytes() == data
    await session.insert_cell(0, "markdown", "b")
    assert [c.summary[-1] for c in await session.history(limit=1)] == ["b"]
    with pytest.raises(UsageError, match="limit must be at least 1"):
        await session.history(limit=0)


# -- undo by id: a change that no longer applies never blocks the older ones ---------------------------


async def test_undo_by_id_while_the_newest_change_no_longer_applies(session: NotebookSession, nb_path: Path) -> None:
    await session.overwrite_source(1, "x = 10")
    await session.overwrite_source(3, "raw, edited")
    # An editor deletes the cell the newest change touched.
    nb = nbformat.read(nb_path, as_version=4)
    del nb.cells[3]
    nbformat.write(nb, nb_path)

    newest, older = await session.history()
    assert newest.stale is not None and "deleted since" in newest.stale
    assert older.stale is None and len({newest.id, older.id}) == 2
    with pytest.raises(UndoConflictError, match=f"change {newest.id}.*forget it"):
        await session.undo()

    result = await session.undo(change_id=older.id)

    assert [c.id for c in result.undone] == [older.id] and result.remaining == 1
    cells = _cells(nb_path)
    assert cells[1]["source"] == "x = 1\nprint(x)" and len(cells) == 4  # the editor's deletion stays
    assert [c.id for c in await session.history()] == [newest.id]
    dropped = await session.forget_changes([newest.id[:4]])  # a unique start of an id is enough
    assert [c.id for c in dropped] == [newest.id]
    assert await session.history() == [] and _cells(nb_path) == cells


async def test_history_marks_what_a_checkout_took_away(session: NotebookSession, nb_path: Path) -> None:
    committed = nb_path.read_bytes()
    await session.overwrite_source(1, "x = 10")
    await session.edit_source(1, "10", "11")  # the older edit still applies once the newer is undone
    await session.insert_cell(0, "markdown", "new intro")
    marks = [(c.kind, c.stale is None) for c in await session.history()]
    assert marks == [("insert", True), ("edit", True), ("overwrite", True)]

    nb_path.write_bytes(committed)  # `git checkout notebook.ipynb`
    changes = await session.history()

    # Undoing the edit and the overwrite would overwrite the checked-out source; the inserted cell is gone.
    assert all(c.stale for c in changes), changes
    assert "no longer in the notebook" in changes[0].stale  # type: ignore[operator]
    assert "changed since" in changes[1].stale  # type: ignore[operator]
    assert nb_path.read_bytes() == committed  # looking changes nothing


async def test_undo_by_id_leaves_newer_changes_to_other_cells(session: NotebookSession, nb_path: Path) -> None:
    ref = await session.insert_cell(0, "markdown", "intro")
    await session.overwrite_source(2, "x = 2")  # the old cell 1, pushed down by the insert
    insert = (await session.history())[1]

    await session.undo(change_id=insert.id)

    cells = _cells(nb_path)
    assert ref.id not in [c["id"] for c in cells] and cells[1]["source"] == "x = 2"
    assert [c.kind for c in await session.history()] == ["overwrite"]


async def test_change_ids_that_name_nothing_are_refused(session: NotebookSession, nb_path: Path) -> None:
    await session.insert_cell(0, "markdown", "a")
    (change,) = await session.history()
    data = nb_path.read_bytes()
    with pytest.raises(UsageError, match=f"no recorded change has the id 'zzzz'.*newest first: {change.id}"):
        await session.undo(change_id="zzzz")
    with pytest.raises(UsageError, match="not both"):
        await session.undo(steps=2, change_id=change.id)
    with pytest.raises(UsageError, match="no recorded change has the id ''"):
        await session.forget_changes([""])
    assert nb_path.read_bytes() == data and len(await session.history()) == 1


def test_cli_undo_by_change_and_drop_stale(nb_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = _original(nb_path)
    anyio.run(NotebookSession(nb_path).overwrite_source, 1, "x = 10")
    anyio.run(NotebookSession(nb_path).overwrite_source, 4, "y = 20")
    _external_edit(nb_path, 4, source="y = 99")  # the newest change no longer applies

    assert cli("history", str(nb_path)) == 0
    out = capsys.readouterr().out
    assert "no longer applies: cell 4 (id " in out and "--drop-stale" in out, out
    older = Journal(nb_path).entries()[0].id
    assert f"  2  {older}  " in out

    assert cli("undo", str(nb_path), "--change", older) == 0
    assert "Took back 1 change(s)" in capsys.readouterr().out
    assert _cells(nb_path)[1] == before[1]
    assert cli("history", str(nb_path), "--drop-stale") == 0 and "Forgot 1 change(s)" in capsys.readouterr().out
    assert cli("history", str(nb_path)) == 0 and "No recorded change" in capsys.readouterr().out
    assert _cells(nb_path)[4]["source"] == "y = 99"


async def test_undo_tool_by_change_id_and_drop(nb_path: Path) -> None:
    _original(nb_path)
    server = build_server(Settings(path=nb_path, timeout=60, kernel_at_open=False, watch=False))
    async with Client(server) as client:
        for args in ({"cell_index": 1, "cell_source": "x = 10"}, {"cell_index": 3, "cell_source": "raw, edited"}):
            r = await client.call_tool("overwrite_cell_source", args)
            assert not r.is_error, text_of(r)
        nb = nbformat.read(nb_path, as_version=4)
        del nb.cells[3]
        nbformat.write(nb, nb_path)
        newest, older = (e.id for e in reversed(Journal(nb_path).entries()))

        listed = text_of(await client.call_tool("list_changes", {}))
        assert f"1. [{newest}]" in listed and "(no longer applies: cell id" in listed
        refused = await client.call_tool("undo", {})
        assert refused.is_error and f"change {newest}" in text_of(refused)
        r = await client.call_tool("undo", {"change_id": older})
        assert not r.is_error and f"[{older}]" in text_of(r) and "1 other change(s)" in text_of(r), text_of(r)
        r = await client.call_tool("undo", {"drop": True})
        assert r.is_error and "drop=True needs change_id" in text_of(r)
        r = await client.call_tool("undo", {"change_id": newest, "drop": True})
        assert not r.is_error and f"Forgot change {newest}" in text_of(r) and "0 recorded" in text_of(r)
    assert Journal(nb_path).entries() == []


# -- the journal: where it lives, its bounds, torn lines ----------------------------------------------


async def test_journal_lives_in_the_state_folder_never_beside_the_notebook(
    session: NotebookSession, nb_path: Path
) -> None:
    await session.insert_cell(0, "markdown", "a")
    assert discards_done()  # the file the save replaced, deleted after the save returns
    assert sorted(p.name for p in nb_path.parent.iterdir()) == [nb_path.name]
    files = list((state_dir() / "journal").iterdir())
    assert files == [Journal(nb_path).path]
    assert json.loads(files[0].read_text())["notebook"] == str(nb_path.resolve())
    # Keyed by the resolved path: the notebook reached through a symlink shares the journal.
    link = nb_path.parent.parent / "link.ipynb"
    link.symlink_to(nb_path)
    assert Journal(link).path == files[0]
    assert (state_dir() / "journal").stat().st_mode & 0o077 == 0  # it holds notebook contents


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="XDG_STATE_HOME is the Linux convention")
def test_state_dir_follows_xdg_state_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(journal.STATE_DIR_ENV)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert state_dir() == tmp_path / "xdg" / "nbmcp"


async def test_journal_keeps_at_most_max_entries(session: NotebookSession, nb_path: Path) -> None:
    lengths = []
    for i in range(MAX_JOURNAL_ENTRIES + 5):
        await session.overwrite_source(4, f"y = {i}")
        lengths.append(len(await session.history()))
    # Full at MAX_JOURNAL_ENTRIES; the next change drops the oldest down to TRIM_TO of the bound.
    kept = int(MAX_JOURNAL_ENTRIES * TRIM_TO)
    assert lengths == [*range(1, MAX_JOURNAL_ENTRIES + 1), *range(kept, kept + 5)]
    history = await session.history()
    assert history[0].summary.endswith(f"y = {MAX_JOURNAL_ENTRIES + 4}")
    oldest = MAX_JOURNAL_ENTRIES + 5 - len(history)
    assert history[-1].summary.endswith(f"y = {oldest}")  # the oldest were dropped
    await session.undo(steps=len(history))
    assert _cells(nb_path)[4]["source"] == f"y = {oldest - 1}"


async def test_journal_stays_within_max_bytes(session: NotebookSession, nb_path: Path) -> None:
    big = "x" * (MAX_JOURNAL_BYTES // 3)
    nb = nbformat.read(nb_path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=big)]
    nbformat.write(nb, nb_path)
    for index in (1, 1, -1):
        await session.delete_cell(index)  # each entry holds a whole code cell: a third of the bound

    assert Journal(nb_path).path.stat().st_size <= MAX_JOURNAL_BYTES
    history = await session.history()
    assert len(history) == 2 and all(c.kind == "delete" for c in history)


async def test_a_change_too_large_to_record_is_a_barrier(session: NotebookSession, nb_path: Path) -> None:
    await session.insert_cell(0, "markdown", "small")
    _external_edit(
        nb_path, 3, outputs=[nbformat.v4.new_output("stream", name="stdout", text="x" * (MAX_JOURNAL_BYTES + 1))]
    )
    await session.delete_cell(3)
    history = await session.history()
    assert history[0].kind == BARRIER and "more than the journal's" in history[0].summary
    data = nb_path.read_bytes()
    with pytest.raises(UsageError, match="nothing can be undone"):
        await session.undo()
    assert nb_path.read_bytes() == data
    assert Journal(nb_path).path.stat().st_size < 10_000


async def test_a_torn_journal_line_stops_undo_there(session: NotebookSession, nb_path: Path) -> None:
    await session.insert_cell(0, "markdown", "before the crash")
    with open(Journal(nb_path).path, "ab") as f:
        f.write(b'{"v":1,"kind":"ins')  # a process killed while appending
    await session.insert_cell(0, "markdown", "after the crash")
    history = await session.history()
    assert [c.kind for c in history] == ["insert", BARRIER, "insert"]
    with pytest.raises(UsageError, match="steps can be at most 1"):
        await session.undo(steps=2)
    await session.undo()
    assert _cells(nb_path)[0]["source"] == "before the crash"


async def test_a_line_being_appended_is_not_an_entry_yet(session: NotebookSession, nb_path: Path) -> None:
    await session.insert_cell(0, "markdown", "one")
    await session.insert_cell(0, "markdown", "two")
    with open(Journal(nb_path).path, "ab") as f:
        f.write(b'{"v":1,"kind":"ins')  # another process half-way through its append (or a crash)
    assert [c.summary[-3:] for c in await session.history()] == ["two", "one"]
    await session.undo()  # takes back "two" and nothing else
    assert [c.summary[-3:] for c in await session.history()] == ["one"]
    assert _cells(nb_path)[0]["source"] == "one"


def _entry(summary: str) -> journal.Entry:
    return journal.Entry("overwrite", summary, {"cell_id": "a", "index": 0, "before": "x", "after": summary})


def test_journal_appends_without_reading_unless_someone_else_wrote(
    nb_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue 23: an append is a write to the end of the file; the file is read again only when another
    # writer (another nbmcp process: here another Journal object) changed it since this one's last write.
    reads: list[int] = []
    read_all = journal._read_all
    monkeypatch.setattr(journal, "_read_all", lambda fd: reads.append(fd) or read_all(fd))
    ours, theirs = Journal(nb_path), Journal(nb_path)

    def summaries() -> list[str]:
        return [e.summary for e in Journal(nb_path).entries()]

    ours.append(_entry("1"))
    assert len(reads) == 1  # nothing known yet: read (there was no file)
    ours.append(_entry("2"))
    ours.append(_entry("3"))
    assert len(reads) == 1
    theirs.append(_entry("4"))  # another writer: reads the file it did not write
    assert len(reads) == 2
    ours.append(_entry("5"))  # notices that append (the size changed)
    assert len(reads) == 3 and summaries() == ["1", "2", "3", "4", "5"]

    theirs.drop({Journal(nb_path).entries()[0].id})  # `nbmcp history --drop`: a new file
    ours.append(_entry("6"))
    assert len(reads) == 4 and summaries() == ["2", "3", "4", "5", "6"]

    # Rewritten in place to the same size by someone else: the last line is not ours any more.
    data = Journal(nb_path).path.read_bytes()
    with open(Journal(nb_path).path, "r+b") as f:
        f.write(data.replace(b'"summary":"6"', b'"summary":"7"'))
    ours.append(_entry("8"))
    assert len(reads) == 5 and summaries() == ["2", "3", "4", "5", "7", "8"]

    # The bound on entries counts the other writer's appends too.
    for i in range(MAX_JOURNAL_ENTRIES - 6):
        (ours if i % 3 else theirs).append(_entry(f"fill {i}"))
    assert len(summaries()) == MAX_JOURNAL_ENTRIES
    ours.append(_entry("over"))
    assert len(summaries()) == int(MAX_JOURNAL_ENTRIES * TRIM_TO) and summaries()[-1] == "over"
    before = len(reads)
    ours.append(_entry("after the trim"))  # the trimmed file is this object's own write: no read
    assert len(reads) == before and summaries()[-2:] == ["over", "after the trim"]


async def test_undo_needs_a_local_file() -> None:
    # A notebook on a Jupyter server has no cross-process lock for the journal: refused before any I/O.
    store = ContentsStore(JupyterServer("http://127.0.0.1:9", None), "work/a.ipynb")
    session = NotebookSession("a.ipynb", store=store)
    with pytest.raises(UsageError, match="local notebook files only"):
        await session.undo()
    with pytest.raises(UsageError, match="local notebook files only"):
        await session.history()


# -- across processes, and from a terminal ------------------------------------------------------------

EDIT_LOOP = textwrap.dedent(
    """
    import sys, anyio
    from nbmcp.session.session import NotebookSession

    async def main():
        session = NotebookSession(sys.argv[1])
        for i in range(int(sys.argv[2])):
            await session.insert_cell(-1, "markdown", f"other process {i}")

    anyio.run(main)
    """
)


@pytest.mark.timeout(180)
async def test_two_processes_share_one_journal(session: NotebookSession, nb_path: Path) -> None:
    before = _cells(nb_path)
    n = 20
    proc = await anyio.open_process([sys.executable, "-c", EDIT_LOOP, str(nb_path), str(n)])
    try:
        for i in range(n):
            await session.insert_cell(0, "markdown", f"this process {i}")
        with anyio.fail_after(120):
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
    assert len(await session.history()) == 2 * n

    await session.undo(steps=2 * n)

    assert _cells(nb_path) == before


def _nbmcp(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nbmcp", *args], capture_output=True, text=True, timeout=60, env=dict(os.environ)
    )


@pytest.mark.timeout(180)
async def test_cli_history_and_undo_on_what_a_server_changed(nb_path: Path) -> None:
    before = _original(nb_path)
    server = build_server(Settings(path=nb_path, timeout=60, kernel_at_open=False, watch=False))
    async with Client(server) as client:
        r = await client.call_tool("overwrite_cell_source", {"cell_index": 1, "cell_source": "x = 10"})
        assert not r.is_error, text_of(r)
        r = await client.call_tool("insert_cell", {"cell_index": 0, "cell_type": "markdown", "cell_source": "intro"})
        assert not r.is_error, text_of(r)
        r = await client.call_tool("delete_cell", {"cell_index": -1})
        assert not r.is_error, text_of(r)

        listed = _nbmcp("history", str(nb_path))
        assert listed.returncode == 0, listed.stderr
        lines = listed.stdout.splitlines()
        assert lines[0].startswith(f"3 recorded change(s) to {nb_path}")
        assert "deleted code cell 5" in lines[1] and "inserted markdown cell 0" in lines[2]
        assert "overwrote the source of cell 1" in lines[3]

        undone = _nbmcp("undo", str(nb_path), "--steps", "3")
        assert undone.returncode == 0, undone.stderr
        assert "Took back 3 change(s)" in undone.stdout and "0 older change(s)" in undone.stdout

        # The server sees the file as it is now, not as it last wrote it.
        r = await client.call_tool("read_cell", {"cell_index": 1})
        assert "x = 1\nprint(x)" in text_of(r)
    assert _cells(nb_path) == before


def test_cli_undo_refuses_over_an_external_change(nb_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # `cli(*args)` is what the nbmcp command runs (the subprocess test above covers the command itself).
    _original(nb_path)
    assert cli("history", str(nb_path)) == 0 and "No recorded change" in capsys.readouterr().out
    anyio.run(NotebookSession(nb_path).overwrite_source, 1, "x = 10")
    _external_edit(nb_path, 1, source="x = 99")
    data = nb_path.read_bytes()

    assert cli("undo", str(nb_path)) == 1

    err = capsys.readouterr().err
    assert "cannot undo" in err and "cell 1" in err and f"nbmcp history {nb_path} --drop " in err
    assert nb_path.read_bytes() == data
    assert cli("history", str(nb_path), "--clear") == 0 and "Forgot 1" in capsys.readouterr().out
    assert cli("history", str(nb_path)) == 0 and "No recorded change" in capsys.readouterr().out


def test_cli_bad_arguments(nb_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _original(nb_path)
    for args, expected in [
        (("undo", str(nb_path), "--steps", "0"), "--steps must be at least 1"),
        (("undo", str(tmp_path / "missing.ipynb")), "no such notebook"),
        (("history", str(tmp_path)), "does not end in .ipynb"),
        (("history", str(nb_path), "--limit", "0"), "--limit must be at least 1"),
    ]:
        with pytest.raises(SystemExit) as exited:
            cli(*args)
        assert exited.value.code == 2 and expected in capsys.readouterr().err, args
    assert cli("undo", str(nb_path)) == 1 and "nothing to undo" in capsys.readouterr().err


def test_entries_round_trip_and_unknown_versions_are_barriers() -> None:
    entry = journal.Entry("overwrite", "overwrote", {"cell_id": "a", "index": 0, "before": "x", "after": "y"})
    line = entry.to_line(Path("/nb.ipynb"))
    assert journal.Entry.from_line(line.rstrip(b"\n")) == entry
    # A line from before changes had ids gets one from its bytes, the same on every read.
    old = json.loads(line)
    del old["id"]
    old_line = json.dumps(old).encode()
    assert journal.Entry.from_line(old_line).id == journal.Entry.from_line(old_line).id != entry.id
    future = json.loads(line)
    future["v"] = 99
    assert journal.Entry.from_line(json.dumps(future).encode()).kind == BARRIER
