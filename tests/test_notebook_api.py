"""The blocking Python API (`nbmcp.Notebook`) on a real kernel, as a CI script uses it."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

import nbmcp
from nbmcp import CellExecutionError, Execution, Notebook
from nbmcp.kernels.base import KernelState

from .conftest import read_nb


def test_a_script_builds_and_runs_a_notebook(nb_path: Path) -> None:
    with Notebook(nb_path, timeout=60) as nb:
        title = nb.add_markdown("# Report")
        setup = nb.add_code("x = 6 * 7")  # added, not run
        result = nb.add_code("print('x =', x)\nx", run=True, check=False)
        nb.execute_cell(setup.index)
        rerun = nb.execute_cell(result.cell.index)
        info = nb.info()
        views = nb.read_cells()
    assert title.index == 0 and setup.index == 1
    assert isinstance(result, Execution) and result.result.status == "error"  # x was not set yet
    assert rerun.ok and rerun.result.outputs[0].text == "x = 42\n"
    assert info["total_cells"] == 3 and info["kernel"]["state"] == "idle"
    assert [v.cell_type for v in views] == ["markdown", "code", "code"]
    cells = read_nb(nb_path).cells
    assert cells[2].outputs[1].data["text/plain"] == "42" and cells[2].execution_count == 3


def test_check_raises_cell_execution_error_with_the_cell_and_traceback(nb_path: Path) -> None:
    with Notebook(nb_path, timeout=60) as nb:
        nb.add_markdown("intro")
        with pytest.raises(CellExecutionError) as exc:
            nb.add_code("def f():\n    raise ValueError('bad input')\nf()", run=True)
        unchecked = nb.add_code("1/0", run=True, check=False)
    err = exc.value
    assert err.index == 1 and err.cell_id and err.status == "error"
    assert f"cell 1 (id {err.cell_id}) raised an exception" in str(err)
    assert "ValueError: bad input" in err.traceback and "\x1b[" not in err.traceback
    assert isinstance(err, RuntimeError)
    assert unchecked.result.status == "error" and "ZeroDivisionError" in unchecked.error_text()
    assert read_nb(nb_path).cells[1].outputs[0].ename == "ValueError"  # saved either way


def test_run_all_with_progress_callbacks(nb_path: Path) -> None:
    seen: list[str] = []
    with Notebook(nb_path, timeout=60) as nb:
        for source in ("a = 1", "b = a + 1", "print(a + b)"):
            nb.add_code(source)
        run = nb.run_all(
            before_cell=lambda k, n, ref: seen.append(f"start {k}/{n} cell {ref.index}"),
            after_cell=lambda k, n, e: seen.append(f"done {k}/{n} {e.result.status}"),
        )
        nb.add_code("raise KeyError('k')")
        with pytest.raises(CellExecutionError):
            nb.run_all(start=2)
    assert run.ok and run.total == 3 and [e.result.execution_count for e in run.executions] == [1, 2, 3]
    assert seen == [
        "start 1/3 cell 0",
        "done 1/3 ok",
        "start 2/3 cell 1",
        "done 2/3 ok",
        "start 3/3 cell 2",
        "done 3/3 ok",
    ]
    assert read_nb(nb_path).cells[3].outputs[0].ename == "KeyError"


def test_interrupt_from_another_thread(nb_path: Path) -> None:
    with Notebook(nb_path, timeout=60) as nb:

        def interrupt_once_running() -> None:
            # Once the cell runs (the kernel may take seconds to start on a busy machine): an interrupt
            # sent before would stop the cell before `x = 1`, which this test relies on.
            deadline = time.monotonic() + 60
            while nb.session.kernel is None or nb.session.kernel.state != KernelState.BUSY:
                assert time.monotonic() < deadline, "the cell never started"
                time.sleep(0.05)
            time.sleep(1.0)
            nb.interrupt()

        threading.Thread(target=interrupt_once_running, daemon=True).start()
        execution = nb.add_code("import time\nx = 1\ntime.sleep(30)", run=True, check=False)
        after = nb.add_code("x + 1", run=True)
    assert execution.result.status == "error" and "KeyboardInterrupt" in execution.error_text()
    assert execution.result.elapsed < 10
    assert after.result.outputs[0].data["text/plain"] == "2"


@pytest.mark.anyio
async def test_works_where_an_event_loop_already_runs(nb_path: Path) -> None:
    # A Jupyter cell or an async script: the notebook's own loop runs in its thread, not this one.
    with Notebook(nb_path, timeout=60) as nb:
        assert nb.add_code("2 + 2", run=True).result.outputs[0].data["text/plain"] == "4"


def test_closed_notebook_says_how_to_open_it(nb_path: Path) -> None:
    nb = Notebook(nb_path)
    with pytest.raises(RuntimeError, match="not open"):
        nb.add_markdown("x")
    nb.open()
    nb.close()
    nb.close()  # twice is fine
    with pytest.raises(RuntimeError, match="not open"):
        nb.read_cells()


def test_create_false_refuses_a_missing_file(nb_path: Path) -> None:
    with pytest.raises(nbmcp.NotebookError):
        Notebook(nb_path, create=False).open()
    assert not nb_path.exists()


def test_public_api_is_exported() -> None:
    for name in ("Notebook", "NotebookSession", "RunAll", "Execution", "CellExecutionError"):
        assert name in nbmcp.__all__ and hasattr(nbmcp, name)
