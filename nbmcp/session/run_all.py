"""Running many cells in order (execute_all_cells, `nbmcp exec`), choosing cells as nbclient does."""

from __future__ import annotations

import time

from nbformat import NotebookNode

from ..errors import CellNotFoundError
from .cells import RAISES_TAG, check_range, ensure_ids, runnable
from .executions import Executions
from .results import AfterCell, BeforeCell, CellRef, ProgressCallback, RunAll

__all__ = ["run_all"]


async def run_all(
    executions: Executions,
    start: int = 0,
    stop: int | None = None,
    *,
    timeout: float | None = None,
    stop_on_error: bool = True,
    before_cell: BeforeCell | None = None,
    after_cell: AfterCell | None = None,
    on_progress: ProgressCallback | None = None,
    progress_every: float = 1.0,
) -> RunAll:
    """Run the code cells of `cells[start:stop]` in order, saving each cell's outputs as it finishes.

    Cells are chosen as nbclient chooses them: blank code cells and cells tagged `skip-execution`
    are left alone. `timeout` applies to each cell. The run stops at the first cell that raises
    (unless `stop_on_error` is False or the cell is tagged `raises-exception`), and always at a
    timeout or a dead kernel; `RunAll.failed` is that cell. Never raises for a cell's failure.
    The cells are chosen once, then followed by id, so cells inserted or moved meanwhile do not
    shift the run; a cell deleted before its turn is noted and skipped.
    """
    executions.require_kernel()
    with executions.exclusive("a run of many cells (execute_all_cells)"):
        started = time.monotonic()
        nb = await executions.document.read()
        selected = check_range(start, stop, len(nb.cells))
        if any(runnable(nb.cells[i]) and "id" not in nb.cells[i] for i in selected):
            # The run follows its cells by id, so cells inserted or moved meanwhile do not shift it.

            def add_ids(nb: NotebookNode) -> NotebookNode:
                ensure_ids(nb)
                return nb

            nb = await executions.document.edit(add_ids)
        plan = [
            (str(nb.cells[i].id), RAISES_TAG in nb.cells[i].get("metadata", {}).get("tags", []))
            for i in selected
            if runnable(nb.cells[i])
        ]
        run = RunAll([], len(plan), 0.0)
        for k, (cell_id, may_raise) in enumerate(plan, 1):
            if before_cell is not None:
                index = await executions.document.index_of(cell_id)
                if index is not None:
                    await before_cell(k, len(plan), CellRef(index, cell_id, "code"))
            try:
                # By id: the callback (or a person) may have moved it since the plan was made.
                i, code, run_id = await executions.prepare_cell(None, cell_id)
                execution = await executions.run_cell(i, code, run_id, timeout, on_progress, progress_every)
            except CellNotFoundError:
                run.notes.append(f"cell id {cell_id} was deleted before its turn; it was not run")
                continue
            run.executions.append(execution)
            if execution.result.note and k == 1:
                # What the kernel says of itself before the first cell (it is not the project's Python,
                # it had died) would otherwise be lost in a run's answer, which lists cells, not notes.
                run.notes.append(execution.result.note)
            if after_cell is not None:
                await after_cell(k, len(plan), execution)
            status = execution.result.status
            if status == "ok" or (status == "error" and (may_raise or not stop_on_error)):
                continue
            run.failed = execution
            break
        run.elapsed = time.monotonic() - started
        return run
