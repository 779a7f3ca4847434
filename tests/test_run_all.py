"""Running many cells: `NotebookSession.run_all` and the execute_all_cells tool, on a real kernel."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from mcp import Client

from nbmcp import CellExecutionError, NotebookSession

from .conftest import read_nb, text_of

pytestmark = pytest.mark.anyio


@pytest.fixture
def client(structured_client: Client) -> Client:
    """These tests read answers' fields (cell_id, status): the server runs with --structured-output."""
    return structured_client


def _write(path: Path, *cells: nbformat.NotebookNode) -> Path:
    nbformat.write(nbformat.v4.new_notebook(cells=list(cells)), path)
    return path


code, md = nbformat.v4.new_code_cell, nbformat.v4.new_markdown_cell


async def test_tool_runs_every_code_cell_with_a_progress_notification_per_cell(client: Client, nb_path: Path) -> None:
    _write(nb_path, md("# t"), code("a = 2"), code("print(a * 21)"), code(""), code("a + 1"))
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    r = await client.call_tool("execute_all_cells", {}, progress_callback=on_progress)
    assert not r.is_error, text_of(r)
    sc = r.structured_content
    assert sc["status"] == "ok" and sc["ran"] == 3 and sc["total"] == 3 and sc["failed_cell_index"] is None
    ran = re.findall(r"^--- cell (\d+) \(id \S+\) execution_count=(\d+)", sc["text"], flags=re.MULTILINE)
    assert ran == [("1", "1"), ("2", "2"), ("4", "3")]
    assert "42" in text_of(r) and "Ran 3 of 3 code cells" in text_of(r)
    messages = [m for _, _, m in seen]
    assert any(m and m.startswith("cell 1 of 3") for m in messages)
    assert any(m and m.startswith("cell 3 of 3") for m in messages)
    assert [p for p, _, _ in seen] == sorted(p for p, _, _ in seen) and seen[-1][:2] == (3, 3)
    cells = read_nb(nb_path).cells
    assert cells[2].outputs[0].text == "42\n" and cells[4].outputs[0].data["text/plain"] == "3"
    assert cells[3].execution_count is None  # blank: left alone, as nbclient does


async def test_tool_stops_at_the_first_error_and_shows_its_traceback(client: Client, nb_path: Path) -> None:
    _write(nb_path, code("x = 1"), code("raise KeyError('missing')"), code("print('later')"))
    r = await client.call_tool("execute_all_cells", {})
    assert not r.is_error  # a failing cell is a result, not a tool error
    sc = r.structured_content
    assert sc["status"] == "error" and sc["ran"] == 2 and sc["failed_cell_index"] == 1
    assert "Stopped: cell 1" in text_of(r) and "KeyError: 'missing'" in text_of(r) and "\x1b[" not in text_of(r)
    assert read_nb(nb_path).cells[2].outputs == []

    r = await client.call_tool("execute_all_cells", {"stop_on_error": False})
    assert r.structured_content["status"] == "ok" and r.structured_content["ran"] == 3
    assert "1 raised (allowed)" in text_of(r)
    assert read_nb(nb_path).cells[2].outputs[0].text == "later\n"


@pytest.mark.parametrize(
    "args, indices",
    [
        ({"start_index": 1}, [1, 2, 3]),
        ({"start_index": 1, "end_index": 2}, [1, 2]),
        ({"end_index": -2}, [0, 1, 2]),
        ({"start_index": -1}, [3]),
    ],
)
async def test_tool_range_is_inclusive(client: Client, nb_path: Path, args: dict[str, int], indices: list[int]) -> None:
    _write(nb_path, *(code(f"print({i})") for i in range(4)))
    r = await client.call_tool("execute_all_cells", args)
    ran = re.findall(r"^--- cell (\d+) ", r.structured_content["text"], flags=re.MULTILINE)
    assert [int(i) for i in ran] == indices


@pytest.mark.parametrize(
    "args, message",
    [
        ({"start_index": 4}, "cell index 4 is out of range; the notebook has 4 cells"),
        ({"end_index": 9}, "cannot run up to cell 9: the notebook has 4 cells (valid: 0 to 3"),
        ({"start_index": 3, "end_index": 1}, "the range ends (at cell 1) before it starts (at cell 3)"),
    ],
)
async def test_tool_range_out_of_the_notebook_is_an_error_that_runs_nothing(
    client: Client, nb_path: Path, args: dict[str, int], message: str
) -> None:
    _write(nb_path, *(code(f"print({i})") for i in range(4)))
    before = nb_path.read_bytes()
    r = await client.call_tool("execute_all_cells", args)
    assert r.is_error and message in text_of(r)
    assert nb_path.read_bytes() == before


async def test_run_all_follows_cells_by_id_when_cells_are_inserted_meanwhile(nb_path: Path) -> None:
    _write(nb_path, code("print('one')"), code("print('two')"))
    session = NotebookSession(nb_path, timeout=60)
    await session.open()
    try:

        async def insert_before(k: int, n: int, ref: object) -> None:
            if k == 1:
                # A person inserts a cell at the top while the run is under way.
                await session.insert_cell(0, "markdown", "inserted meanwhile")

        run = await session.run_all(before_cell=insert_before)
    finally:
        await session.close()
    assert run.ok and [e.cell.index for e in run.executions] == [1, 2]
    cells = read_nb(nb_path).cells
    assert [c.source for c in cells] == ["inserted meanwhile", "print('one')", "print('two')"]
    assert cells[1].outputs[0].text == "one\n" and cells[2].outputs[0].text == "two\n"


async def test_run_all_gives_a_4_4_notebook_ids_and_reports_the_failure(tmp_path: Path) -> None:
    from .conftest import copy_golden

    path = copy_golden("v44_no_ids.ipynb", tmp_path / "work" / "old.ipynb")
    session = NotebookSession(path, timeout=60)
    await session.open()
    try:
        first = await session.run_all()
        upgraded = read_nb(path)
        await session.insert_cell(-1, "code", "raise SystemError('stop here')")
        run = await session.run_all()
    finally:
        await session.close()
    assert first.ok and upgraded.nbformat_minor == 5 and all(c.id for c in upgraded.cells)
    assert upgraded.cells[0].outputs[0].data["text/plain"] == "42"
    assert not run.ok and run.failed is not None and run.failed.result.status == "error"
    with pytest.raises(CellExecutionError) as exc:
        run.raise_for_status()
    assert exc.value.index == 2 and exc.value.cell_id == run.failed.cell.id
    assert "cell 2 (id " in str(exc.value) and "SystemError: stop here" in str(exc.value)
