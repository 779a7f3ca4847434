"""Running many cells in order (execute_all_cells, `nbmcp exec`), choosing cells as nbclient does."""

from __future__ import annotations

import time

import anyio
from nbformat import NotebookNode

from ..errors import CellNotFoundError
from .cells import RAISES_TAG, check_range, ensure_ids, runnable
from .executions import HEADLESS_SAVE_INTERVAL, Executions
from .results import AfterCell, BeforeCell, CellRef, Execution, ProgressCallback, RunAll, cell_name

__all__ = ["clean_exit", "run_all"]


def clean_exit(execution: Execution) -> bool:
    """Whether the cell ended the run on purpose: `sys.exit(0)`, `sys.exit()`, `raise SystemExit`.

    papermill's rule (`raise_for_execution_errors`): a SystemExit whose value is empty or 0 is no error.
    """
    return execution.result.status == "error" and any(
        o.get("output_type") == "error" and o.get("ename") == "SystemExit" and o.get("evalue") in ("", "0")
        for o in execution.result.outputs
    )


def _shows_error(execution: Execution) -> bool:
    return execution.result.status == "ok" and any(o.get("output_type") == "error" for o in execution.result.outputs)


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
    headless: bool = False,
    error_outputs_fail: bool = False,
) -> RunAll:
    """Run the code cells of `cells[start:stop]` in order, saving each cell's outputs as it finishes.

    Cells are chosen as nbclient chooses them: blank code cells and cells tagged `skip-execution`
    are left alone. `timeout` applies to each cell. The run stops at the first cell that raises
    (unless `stop_on_error` is False or the cell is tagged `raises-exception`), and always at a
    timeout or a dead kernel; `RunAll.failed` is that cell. Never raises for a cell's failure.
    The cells are chosen once, then followed by id, so cells inserted or moved meanwhile do not
    shift the run; a cell deleted before its turn is noted and skipped.

    `headless` (`nbmcp exec`, as papermill): outputs are saved together, every HEADLESS_SAVE_INTERVAL
    seconds and when the run ends; a clean SystemExit (`clean_exit`) ends the run early as a success
    (`RunAll.exited`); and the cells that were to run after the cell that stopped the run get their
    outputs and execution counts cleared, so none can be mistaken for this run's.
    `error_outputs_fail` (nbmake's rule): a cell that shows an error output without raising fails.
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
        try:
            await _run_plan(
                executions,
                plan,
                run,
                timeout,
                stop_on_error,
                before_cell,
                after_cell,
                on_progress,
                progress_every,
                headless,
                error_outputs_fail,
            )
        finally:
            if run.stopped_after is not None:
                # The cells that were to run after the one that stopped it lose an older run's outputs.
                executions.unsaved += [(cell_id, [], None) for cell_id, _ in plan[run.stopped_after :]]
            with anyio.CancelScope(shield=True):
                # A headless run saves its cells together: what it has not saved yet is saved now, in one
                # write, however it ends (a signal, a failure).
                await executions.save_unsaved()
        # What the last cells left for other cells or the metadata (language_info when no cell ran).
        await executions.frontend.save(executions.document, executions.kernel)
        run.elapsed = time.monotonic() - started
        return run


async def _run_plan(
    executions: Executions,
    plan: list[tuple[str, bool]],
    run: RunAll,
    timeout: float | None,
    stop_on_error: bool,
    before_cell: BeforeCell | None,
    after_cell: AfterCell | None,
    on_progress: ProgressCallback | None,
    progress_every: float,
    headless: bool,
    error_outputs_fail: bool,
) -> None:
    """The loop of `run_all`: each cell of `plan` in turn, until one stops the run.

    A headless run leaves each cell's outputs unsaved and saves them together every
    HEADLESS_SAVE_INTERVAL seconds (`run_all` saves the rest when the loop ends).
    """
    last_save = time.monotonic()
    for k, (cell_id, may_raise) in enumerate(plan, 1):
        if before_cell is not None:
            index = await executions.document.index_of(cell_id)
            if index is not None:
                await before_cell(k, len(plan), CellRef(index, cell_id, "code"))
        try:
            # By id: the callback (or a person) may have moved it since the plan was made.
            i, code, run_id = await executions.prepare_cell(None, cell_id)
            execution = await executions.run_cell(
                i, code, run_id, timeout, on_progress, progress_every, save=not headless
            )
        except CellNotFoundError:
            run.notes.append(f"cell id {cell_id} was deleted before its turn; it was not run")
            continue
        if headless and time.monotonic() - last_save >= HEADLESS_SAVE_INTERVAL:
            await executions.save_unsaved()
            last_save = time.monotonic()
        if error_outputs_fail and _shows_error(execution):
            execution.result.status = "error"
            note = "it shows an error output without raising (failed by --fail-on-error-output)"
            execution.result.note = "; ".join(filter(None, [execution.result.note, note]))
        run.executions.append(execution)
        if execution.result.note and k == 1:
            # What the kernel says of itself before the first cell (it is not the project's Python,
            # it had died) would otherwise be lost in a run's answer, which lists cells, not notes.
            run.notes.append(execution.result.note)
        if after_cell is not None:
            await after_cell(k, len(plan), execution)
        status = execution.result.status
        if headless and clean_exit(execution):
            run.exited = execution
            run.notes.append(f"{cell_name(execution.cell)} ended the run with {_exit_call(execution)}")
        elif status == "ok" or (status == "error" and (may_raise or not stop_on_error)):
            continue
        else:
            run.failed = execution
        if headless:
            run.stopped_after = k
        break


def _exit_call(execution: Execution) -> str:
    value = next(o.get("evalue") for o in execution.result.outputs if o.get("ename") == "SystemExit")
    return f"SystemExit({value})"
