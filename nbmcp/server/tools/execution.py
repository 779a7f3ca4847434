"""Tools that run code: one cell, scratch code, or many cells in order.

A cell that outlives `--max-wait` goes on in the background (`nbmcp.session.executions`) and the
answer gives its `execution_id` for `wait_for_execution`. Cancelling the call that started it (before
it answered) interrupts the kernel; after that the execution belongs to no call, and cancelling a
`wait_for_execution` only ends that wait. A second execution while one runs is refused at once rather
than queued: it would only sit behind a cell that may run for minutes. The MCP Tasks extension
(`io.modelcontextprotocol/tasks`) would fit this, but is not served: the MCP SDK nbmcp is built on (2.3)
has the hooks an extension needs and neither the implementation nor the wire types of that one.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Annotated

from mcp.server.mcpserver import Context
from mcp.types import CallToolResult

from ...errors import UsageError
from ...kernels.base import ExecutionResult
from ...session.results import BackgroundExecution, CellRef, RunAll
from ...session.session import NotebookSession
from ..render import ImageBudget, render
from .answers import CELL_OUTPUT_CHARS, ExecutionAnswer, ExecutionsAnswer, RunAllAnswer, address, cell_name, image_infos
from .registry import CellIndex, timeout_of, tool, toolbox

__all__ = [
    "PROGRESS_INTERVAL",
    "append_execute_code_cell",
    "execute_all_cells",
    "execute_cell",
    "execute_cell_simple_timeout",
    "execute_cell_streaming",
    "execute_cell_with_progress",
    "execute_code",
    "insert_execute_code_cell",
    "list_executions",
    "wait_for_execution",
]

#: Progress interval (seconds) of execute_cell_with_progress and execute_cell.
PROGRESS_INTERVAL = 1.0
#: The seed tools' default timeout, kept as it was.
SEED_TIMEOUT = 300

Ran = Annotated[CallToolResult, ExecutionAnswer]
Progress = Callable[[float, str], Awaitable[None]]

_STATUS = {
    "ok": "",
    "error": "; the code raised an error (traceback below)",
    "timeout": "; TIMED OUT",
    "running": "; still running",
    "dead": "; THE KERNEL DIED",
    "interrupted": "; INTERRUPTED (restart_kernel or interrupt_kernel stopped it)",
}


def _head(res: ExecutionResult, what: str, *, counted: bool = True) -> str:
    head = f"{what} ran in {res.elapsed:.2f} s"
    if counted and res.execution_count is not None:
        head += f", execution_count {res.execution_count}"
    return head + _STATUS.get(res.status, f"; {res.status}")


def _running_head(job: BackgroundExecution, what: str, max_wait: float) -> str:
    ident = job.id
    saved = ", and are saved into the cell as they arrive" if job.cell is not None else ""
    return (
        f"{what} is STILL RUNNING after {job.elapsed:.0f} s (execution_id {ident!r}); this call answers after "
        f"--max-wait ({max_wait:g} s) so that the client does not give up. The outputs so far are below{saved}. "
        f"wait_for_execution(execution_id={ident!r}) waits for more and returns the final outputs; "
        f"interrupt_kernel stops it (its timeout interrupts it after {job.timeout:g} s). Other executions are "
        "refused until it ends."
    )


def _answer(
    res: ExecutionResult,
    cell: CellRef | None,
    notes: list[str],
    saved: bool,
    *,
    job: BackgroundExecution | None = None,
) -> CallToolResult:
    box = toolbox()
    running = job is not None and job.running
    where = address(cell.index, cell.id) if cell is not None and saved else None
    shown = render(res.outputs, max_chars=box.max_output_chars, max_image_bytes=box.max_image_bytes, cell=where)
    what = cell_name(cell.index, cell.id) if cell is not None else "code"
    if job is not None and running:
        head = _running_head(job, what, box.max_wait)
    else:
        head = _head(res, what, counted=cell is not None)
        if job is not None:
            head += f" (execution_id {job.id!r})"
    lines = [head] + [f"Note: {n}" for n in notes]
    lines.append(shown.text or ("(no output yet)" if running else "(no output)"))
    answer = ExecutionAnswer(
        text="\n".join(lines),
        images=image_infos(shown.images, cell.index if cell else None, cell.id if cell else None),
        cell_index=cell.index if cell else None,
        cell_id=cell.id if cell else None,
        status=res.status,
        # Scratch code (execute_code) takes no execution count: the kernel reports 0 for it.
        execution_count=res.execution_count if cell is not None else None,
        elapsed_seconds=round(res.elapsed, 3),
        saved=saved,
        execution_id=job.id if job is not None else None,
        running=running,
    )
    return box.reply(answer, shown.images, shown.cuts)


def _job_answer(job: BackgroundExecution) -> CallToolResult:
    """What an execution tool or wait_for_execution answers: final outputs, or the outputs so far."""
    if job.error is not None:
        raise job.error
    execution = job.execution
    if execution is not None:
        res = execution.result
        notes = ([res.note] if res.note else []) + execution.notes
        return _answer(res, execution.cell, notes, execution.saved, job=job)
    res = job.snapshot()
    notes = [res.note] if res.note else []
    return _answer(res, job.cell, notes, job.cell is not None, job=job)


def _progress(ctx: Context) -> Progress:
    """Progress notifications of one running execution: elapsed seconds, and no total.

    How long a cell will run is unknown: its timeout as the total made clients show "1 %" for most of
    a run (Gemini CLI, issue 23). The message says the elapsed time and the latest output line.
    """

    async def progress(elapsed: float, last_line: str) -> None:
        message = f"running for {elapsed:.0f} s"
        if last_line:
            message += f"; latest output: {last_line[:200]}"
        await ctx.report_progress(elapsed, None, message)

    return progress


async def _wait(ctx: Context, session: NotebookSession, job: BackgroundExecution, interval: float | None) -> Ran:
    """Wait up to --max-wait for the execution this call started; a cancelled call interrupts it."""
    box = toolbox()
    progress = None if interval is None else _progress(ctx)
    await session.wait_execution(
        job, box.max_wait, on_progress=progress, progress_every=interval or 1.0, interrupt_if_cancelled=True
    )
    return _job_answer(job)


async def _run(
    ctx: Context,
    session: NotebookSession,
    index: int | None,
    cell_id: str | None,
    timeout: float,
    interval: float | None,
) -> CallToolResult:
    job = await session.start_cell(index, cell_id=cell_id, timeout=timeout)
    return await _wait(ctx, session, job, interval)


async def _add_and_run(ctx: Context, index: int | None, cell_id: str | None, source: str) -> CallToolResult:
    box = toolbox()
    session = await box.session(ctx)
    session.check_idle()  # a busy kernel: refuse before adding a cell that would not run
    ref = await session.insert_cell(index, "code", source, cell_id=cell_id)
    return await _run(ctx, session, None, ref.id, box.default_timeout, PROGRESS_INTERVAL)


@tool
async def append_execute_code_cell(cell_source: str, ctx: Context) -> Ran:
    """Add a code cell at the end of the notebook and run it; returns its outputs.

    The outputs (text, tracebacks, images) are saved in the notebook. An exception in the code is a
    normal result that shows the traceback. Runs for at most the server's --timeout (300 s by
    default), then the kernel is interrupted.

    Still running after the server's --max-wait (50 s by default)? The answer says STILL RUNNING, with
    the outputs so far and an execution_id; the code runs on and wait_for_execution returns the rest.
    """
    return await _add_and_run(ctx, -1, None, cell_source)


@tool
async def insert_execute_code_cell(
    ctx: Context, cell_index: CellIndex | None = None, *, cell_source: str, cell_id: str | None = None
) -> Ran:
    """Insert a code cell before the cell at `cell_index` (the cell count or -1 = end) and run it.

    Or give `cell_id` instead to insert before that cell. Returns its outputs, which are also saved
    in the notebook.

    Still running after the server's --max-wait (50 s by default)? The answer says STILL RUNNING, with
    the outputs so far and an execution_id; the code runs on and wait_for_execution returns the rest.
    """
    return await _add_and_run(ctx, cell_index, cell_id, cell_source)


async def _execute_cell(
    ctx: Context, cell_index: int | None, cell_id: str | None, timeout_seconds: float | None, progress: float | None
) -> CallToolResult:
    """The one body of the execute-cell tools (the seed's three variants and execute_cell)."""
    box = toolbox()
    timeout = timeout_of(timeout_seconds, box.default_timeout)
    return await _run(ctx, await box.session(ctx), cell_index, cell_id, timeout, progress)


@tool
async def execute_cell_simple_timeout(
    ctx: Context, cell_index: CellIndex | None = None, timeout_seconds: float = SEED_TIMEOUT, cell_id: str | None = None
) -> Ran:
    """Run the code cell at `cell_index` (or with `cell_id`) and return its outputs (also saved).

    If it runs longer than `timeout_seconds` (a positive number), the kernel is interrupted and the
    partial outputs are returned; the kernel stays usable. Use execute_cell_with_progress for
    long-running cells.

    Still running after the server's --max-wait (50 s by default)? The answer says STILL RUNNING, with
    the outputs so far and an execution_id; the code runs on and wait_for_execution returns the rest.
    """
    return await _execute_cell(ctx, cell_index, cell_id, timeout_seconds, None)


@tool
async def execute_cell_streaming(
    ctx: Context,
    cell_index: CellIndex | None = None,
    timeout_seconds: float = SEED_TIMEOUT,
    progress_interval: float = 5,
    cell_id: str | None = None,
) -> Ran:
    """Run the code cell at `cell_index` (or `cell_id`), with progress every `progress_interval` s.

    Each notification carries the elapsed time and the latest output line. Returns the outputs when
    the cell finishes (or is interrupted after `timeout_seconds`).

    Still running after the server's --max-wait (50 s by default)? The answer says STILL RUNNING, with
    the outputs so far and an execution_id; the code runs on and wait_for_execution returns the rest.
    """
    if progress_interval <= 0:
        raise UsageError(f"progress_interval must be a positive number of seconds, not {progress_interval!r}")
    return await _execute_cell(ctx, cell_index, cell_id, timeout_seconds, max(progress_interval, 1))


@tool
async def execute_cell_with_progress(
    ctx: Context, cell_index: CellIndex | None = None, timeout_seconds: float = SEED_TIMEOUT, cell_id: str | None = None
) -> Ran:
    """Run the code cell at `cell_index` (or `cell_id`), with progress notifications every second.

    Returns the outputs when it finishes; after `timeout_seconds` the kernel is interrupted and the
    partial outputs are returned.

    Still running after the server's --max-wait (50 s by default)? The answer says STILL RUNNING, with
    the outputs so far and an execution_id; the code runs on and wait_for_execution returns the rest.
    """
    return await _execute_cell(ctx, cell_index, cell_id, timeout_seconds, PROGRESS_INTERVAL)


@tool
async def execute_cell(
    ctx: Context,
    cell_index: CellIndex | None = None,
    cell_id: str | None = None,
    timeout_seconds: float | None = None,
) -> Ran:
    """Run the code cell at `cell_index` (or with `cell_id`); returns its outputs, also saved in the cell.

    Sends progress notifications every second (elapsed time, latest output line). After
    `timeout_seconds` (default: the server's --timeout) the kernel is interrupted and the partial
    outputs are returned. An exception in the code is a normal result with the traceback.

    Still running after the server's --max-wait (50 s by default)? The answer says STILL RUNNING, with
    the outputs so far and an execution_id; the code runs on and wait_for_execution returns the rest.
    """
    return await _execute_cell(ctx, cell_index, cell_id, timeout_seconds, PROGRESS_INTERVAL)


@tool
async def execute_code(code: str, ctx: Context, timeout_seconds: float | None = None) -> Ran:
    """Run code in the notebook's kernel without adding a cell; nothing is saved in the notebook.

    For scratch work: checks, `%pip install`, looking at a variable. Variables it defines stay in
    the kernel. Sends progress notifications; interrupted after `timeout_seconds` (default: the
    server's --timeout). Use a cell instead for anything the notebook should keep.

    Still running after the server's --max-wait (50 s by default)? The answer says STILL RUNNING, with
    the outputs so far and an execution_id; the code runs on and wait_for_execution returns the rest.
    """
    box = toolbox()
    timeout = timeout_of(timeout_seconds, box.default_timeout)
    session = await box.session(ctx)
    job = await session.start_code(code, timeout=timeout)
    return await _wait(ctx, session, job, PROGRESS_INTERVAL)


@tool
async def wait_for_execution(execution_id: str, ctx: Context, timeout_seconds: float | None = None) -> Ran:
    """Wait for an execution that is still running: one an execution tool answered STILL RUNNING.

    Execution tools answer after the server's --max-wait (50 s by default) with the outputs so far and
    an `execution_id` while the code keeps running. This waits up to `timeout_seconds` (default and
    at most --max-wait) and answers like an execution tool: the final outputs and status once it has
    finished, or the outputs so far, STILL RUNNING (call it again to keep waiting). A finished
    execution's answer stays available for a while. interrupt_kernel stops a running execution.
    Cancelling this call only stops the waiting.
    """
    box = toolbox()
    session = await box.session(ctx)
    wait = min(timeout_of(timeout_seconds, box.max_wait), box.max_wait)
    job = session.execution(execution_id)
    await session.wait_execution(job, wait, on_progress=_progress(ctx))
    return _job_answer(job)


@tool
async def list_executions(ctx: Context) -> Annotated[CallToolResult, ExecutionsAnswer]:
    """The execution running now (if any) and the recently finished ones, with their execution ids.

    Only one execution runs at a time; wait_for_execution(execution_id) returns one's outputs.
    """
    box = toolbox()
    session = await box.session(ctx)
    jobs = session.executions()
    lines: list[str] = []
    for job in jobs:
        what = job.describe()
        if job.running:
            last = job.collector.last_line if job.collector is not None else ""
            line = f"{job.id}: {what} RUNNING for {job.elapsed:.0f} s (timeout {job.timeout:g} s)"
            line += f"; latest output: {last[:200]}" if last else "; no output yet"
        elif job.error is not None:
            line = f"{job.id}: {what} failed after {job.elapsed:.1f} s: {str(job.error)[:300]}"
        else:
            res = job.result
            status = res.status if res is not None else "?"
            ago = time.monotonic() - (job.finished or job.started)
            line = f"{job.id}: {what} finished ({status}) in {job.elapsed:.1f} s, {ago:.0f} s ago"
        lines.append(line)
    running = session.running_execution
    if not jobs:
        head = "No execution has been started in this notebook since the server started (or none is kept)."
    elif running is None:
        head = f"Nothing is running. The last {len(jobs)} execution(s), newest first:"
    else:
        head = (
            f"Running: {running.describe()} (execution_id {running.id!r}); wait_for_execution waits for it, "
            "interrupt_kernel stops it. Executions, newest first:"
        )
    answer = ExecutionsAnswer(
        text="\n".join([head, *lines]), running_execution_id=running.id if running else None, count=len(jobs)
    )
    return box.reply(answer)


def _run_all_text(run: RunAll, max_chars: int, cuts: list[str]) -> str:
    """One line per cell with its shortened output; the failing cell's traceback whole (within budget).

    What it leaves out goes into `cuts`, with the calls that return it.
    """
    failed = run.failed
    if failed is None:
        head = f"Ran {len(run.executions)} of {run.total} code cells in {run.elapsed:.2f} s"
        head += "; every cell ran without error." if not run.errors else f"; {len(run.errors)} raised (allowed)."
    else:
        what = {
            "error": "raised an error",
            "timeout": "TIMED OUT",
            "dead": "KILLED THE KERNEL",
            "interrupted": "WAS INTERRUPTED",
        }
        head = (
            f"Stopped: {cell_name(failed.cell.index, failed.cell.id)} {what.get(failed.result.status, '')}; "
            f"ran {len(run.executions)} of {run.total} code cells in {run.elapsed:.2f} s. "
            "Its traceback is below; later cells were not run."
        )
    lines = [head] + [f"Note: {n}" for n in run.notes]
    # The failing cell's traceback is what the model needs most: it gets up to half the budget.
    error = (failed.error_text() or "(no traceback)") if failed is not None else ""
    if error:
        where = address(failed.cell.index, failed.cell.id) if failed is not None else None
        shown_error = render([{"output_type": "stream", "text": error}], max_chars=max_chars // 2)
        error = shown_error.text
        if shown_error.cuts and where is not None:
            cuts.append(f"the middle of the traceback: read_cell({where}) shows the cell's outputs")
    used = sum(len(line) + 1 for line in lines) + len(error)
    images = ImageBudget(0, reason="a run of many cells shows no images")
    for shown, e in enumerate(run.executions):
        entry_cuts: list[str] = []
        status = "" if e.ok else f" [{e.result.status}]"
        entry = f"--- {cell_name(e.cell.index, e.cell.id)} execution_count={e.result.execution_count}{status}"
        if e is not failed:
            out = render(
                e.result.outputs, max_chars=CELL_OUTPUT_CHARS, cell=address(e.cell.index, e.cell.id), images=images
            )
            if out.text:
                entry += "\n" + out.text
            entry_cuts = out.cuts
        if used + len(entry) + 1 > max_chars and shown > 0:
            rest = len(run.executions) - shown
            more = f"read_notebook(start_index={e.cell.index}, response_format='detailed')"
            lines.append(f"[... {rest} more cell(s) ran; {more} shows them ...]")
            cuts.insert(0, f"{rest} more cell(s) that ran: {more} shows them")
            break
        cuts.extend(entry_cuts)
        lines.append(entry)
        used += len(entry) + 1
    if error:
        lines.append(error)
    return "\n".join(lines)


@tool
async def execute_all_cells(
    ctx: Context,
    start_index: CellIndex = 0,
    end_index: CellIndex = -1,
    timeout_seconds: float = SEED_TIMEOUT,
    stop_on_error: bool = True,
) -> Annotated[CallToolResult, RunAllAnswer]:
    """Run the code cells from `start_index` to `end_index` (inclusive; -1 = the last cell) in order.

    Like "Run All" in Jupyter: outputs are saved in each cell as it finishes, blank cells and cells
    tagged skip-execution are skipped. Stops at the first cell that raises (unless `stop_on_error`
    is false), times out (`timeout_seconds` per cell) or kills the kernel, and returns that cell's
    traceback. Sends a progress notification per cell ("cell k of n"). Returns every cell's status
    and shortened outputs. To run one cell, use an execute_cell tool instead.
    """
    box = toolbox()
    timeout = timeout_of(timeout_seconds, box.default_timeout)
    session = await box.session(ctx)
    current = [0, 0]  # k (0-based) and n of the cell running now, for progress in the middle of a cell

    async def before(k: int, n: int, ref: CellRef) -> None:
        current[:] = [k - 1, n]
        await ctx.report_progress(k - 1, n, f"cell {k} of {n}: {cell_name(ref.index, ref.id)}")

    async def during(elapsed: float, last_line: str) -> None:
        k, n = current
        # Progress must grow with every notification: stay below the next cell's whole number.
        message = f"cell {k + 1} of {n} running for {elapsed:.0f} s"
        if last_line:
            message += f"; latest output: {last_line[:200]}"
        await ctx.report_progress(k + min(elapsed / max(timeout, 1), 0.99), n, message)

    # end_index is inclusive, as the model reads "from 2 to 5"; run_all takes a Python-style stop.
    stop = None if end_index == -1 else end_index + 1
    run = await session.run_all(
        start_index,
        stop,
        timeout=timeout,
        stop_on_error=stop_on_error,
        before_cell=before,
        on_progress=during,
        progress_every=PROGRESS_INTERVAL,
    )
    await ctx.report_progress(run.total, run.total, f"done: ran {len(run.executions)} of {run.total}")
    cuts: list[str] = []
    text = _run_all_text(run, box.max_output_chars, cuts)
    failed = run.failed
    answer = RunAllAnswer(
        text=text,
        status="ok" if failed is None else failed.result.status,
        ran=len(run.executions),
        total=run.total,
        elapsed_seconds=round(run.elapsed, 3),
        failed_cell_index=None if failed is None else failed.cell.index,
        failed_cell_id=None if failed is None else failed.cell.id,
    )
    return box.reply(answer, cuts=cuts)
