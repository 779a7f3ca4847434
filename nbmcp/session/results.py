"""What the session returns: cells, executions, runs of many cells, changes and variables.

Plain dataclasses with no I/O, so a caller (a tool, a CI script) can read them without knowing how
the session produced them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import nbformat
from nbformat import NotebookNode

from ..errors import CellExecutionError
from ..kernels.base import ExecutionResult
from ..kernels.outputs import OutputCollector, normalize_stream_text, output_text
from ..notebook.journal import Entry

__all__ = [
    "CANCELLED_NOTE",
    "AfterCell",
    "BackgroundExecution",
    "BeforeCell",
    "CellRef",
    "CellView",
    "Change",
    "Execution",
    "ProgressCallback",
    "RunAll",
    "UndoResult",
    "Variable",
    "cancelled_output",
    "cell_name",
    "change_of",
]

#: The note saved under the outputs of a cell whose call the client cancelled.
CANCELLED_NOTE = "the client cancelled this call"

ProgressCallback = Callable[[float, str], Awaitable[None]]
#: Called by run_all before code cell k (1-based) of n runs.
BeforeCell = Callable[[int, int, "CellRef"], Awaitable[None]]
#: Called by run_all after code cell k (1-based) of n ran.
AfterCell = Callable[[int, int, "Execution"], Awaitable[None]]


@dataclass(frozen=True)
class CellRef:
    """Where a cell is: its index now and its stable id (None in a 4.4 notebook without ids)."""

    index: int
    id: str | None
    cell_type: str


@dataclass(frozen=True)
class CellView:
    """Everything about one cell, as read from the notebook."""

    index: int
    id: str | None
    cell_type: str
    source: str
    execution_count: int | None
    outputs: list[dict[str, Any]]


@dataclass
class Execution:
    """The result of running a cell: the kernel's result plus where the outputs were saved."""

    cell: CellRef
    result: ExecutionResult
    saved: bool = True
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.result.status == "ok"

    def error_text(self) -> str:
        """The tracebacks of the cell's error outputs (ANSI stripped) and the note on a timeout or death."""
        parts = [output_text(o) for o in self.result.outputs if o.get("output_type") == "error"]
        if self.result.note:
            parts.append(self.result.note)
        return "\n".join(parts)

    def raise_for_status(self) -> Execution:
        """Raise CellExecutionError unless the cell ran without error; returns self, for chaining."""
        if not self.ok:
            raise CellExecutionError(self.cell.index, self.cell.id, self.result.status, self.error_text())
        return self


@dataclass
class RunAll:
    """The result of `NotebookSession.run_all`: what ran, and the cell that stopped the run, if any."""

    executions: list[Execution]
    total: int
    """Code cells selected to run (blank cells and cells tagged skip-execution are not counted)."""
    elapsed: float
    failed: Execution | None = None
    """The cell that stopped the run: an error not allowed, a timeout or a dead kernel."""
    notes: list[str] = field(default_factory=list)
    exited: Execution | None = None
    """The cell that ended a headless run early with `sys.exit(0)` (a success, as papermill has it)."""
    stopped_after: int | None = None
    """In a headless run stopped early: how many planned cells were reached (the rest are cleared)."""

    @property
    def ok(self) -> bool:
        return self.failed is None

    @property
    def errors(self) -> list[Execution]:
        """Every cell that did not run cleanly, including errors that were allowed."""
        return [e for e in self.executions if not e.ok]

    def raise_for_status(self) -> RunAll:
        """Raise CellExecutionError for the cell that stopped the run; returns self otherwise."""
        if self.failed is not None:
            self.failed.raise_for_status()
        return self


@dataclass(eq=False)
class BackgroundExecution:
    """An execution that runs in a task owned by the session, so that it can outlive the call that started it.

    Execution tools start one and wait for it up to --max-wait; if it has not finished by then they
    answer with the outputs so far and its `id`, and `NotebookSession.wait_execution` picks it up
    later (issue 15). A cell's outputs keep being saved into the cell while it runs and when it ends,
    whoever waits.
    """

    id: str
    cell: CellRef | None
    """The cell at the start (None: scratch code, nothing is saved)."""
    started: float
    """time.monotonic() at the start."""
    timeout: float
    task: asyncio.Task[None] | None = field(default=None, repr=False)
    collector: OutputCollector | None = field(default=None, repr=False)
    """The outputs as they arrive (set at the first progress tick, within a second of the start)."""
    execution: Execution | None = None
    """The finished cell (cell executions)."""
    code_result: ExecutionResult | None = None
    """The finished run (scratch code)."""
    error: Exception | None = None
    """What made the execution fail outside the code (a kernel that could not start, a failed save)."""
    finished: float | None = None
    on_progress: ProgressCallback | None = field(default=None, repr=False)
    """The progress callback of the call waiting for it now, if any."""
    progress_every: float = 1.0
    cancelled_at: float | None = None
    """When the client cancelled the call that started it (the kernel was then interrupted)."""
    """How often that call wants progress (seconds)."""
    next_progress: float = 0.0

    @property
    def running(self) -> bool:
        return self.finished is None

    @property
    def elapsed(self) -> float:
        return (self.finished if self.finished is not None else time.monotonic()) - self.started

    @property
    def result(self) -> ExecutionResult | None:
        """The final result, once it finished (None while running or when it failed with `error`)."""
        return self.execution.result if self.execution is not None else self.code_result

    def describe(self) -> str:
        return cell_name(self.cell) if self.cell is not None else "scratch code (execute_code)"

    def outputs_so_far(self) -> list[NotebookNode]:
        """A copy of the outputs received up to now (stream text normalised as it will be saved)."""
        if self.collector is None:
            return []
        outputs = [NotebookNode(dict(o)) for o in self.collector.outputs]
        for out in outputs:
            if out.get("output_type") == "stream":
                out["text"] = normalize_stream_text(out.get("text", ""))
        return outputs

    def snapshot(self) -> ExecutionResult:
        """The final result, or what there is so far with status ``running``."""
        result = self.result
        if result is not None:
            return result
        if self.error is not None:
            return ExecutionResult(self.outputs_so_far(), None, "failed", self.elapsed, str(self.error))
        count = self.collector.execution_count if self.collector is not None else None
        return ExecutionResult(self.outputs_so_far(), count, "running", self.elapsed)


@dataclass(frozen=True)
class Change:
    """One change nbmcp made to the notebook, as the undo journal records it."""

    step: int
    """1 for the newest change; `undo(steps=k)` takes back steps 1 to k."""
    kind: str
    """insert, overwrite, edit, delete, move, clear_outputs; or barrier (a change too large to record)."""
    time: str
    """When nbmcp made it (ISO 8601, UTC)."""
    summary: str
    cell_ids: tuple[str, ...]
    id: str = ""
    """The change's id: `undo(change_id=...)` takes back that one change."""
    stale: str | None = None
    """Why undo can no longer take this change back (its cell was deleted or changed since), else None."""


@dataclass(frozen=True)
class UndoResult:
    """What `NotebookSession.undo` took back (newest first) and what is left to undo."""

    undone: list[Change]
    remaining: int
    """Changes still recorded, which a later undo can take back."""
    total_cells: int
    """Cells in the notebook after the undo."""


def change_of(step: int, entry: Entry, stale: str | None = None) -> Change:
    return Change(step, entry.kind, entry.time, entry.summary, tuple(entry.cell_ids()), entry.id, stale)


@dataclass(frozen=True)
class Variable:
    """One variable of the kernel's user namespace, as list_variables reports it."""

    name: str
    type: str
    repr: str
    shape: list[int] | None = None


def cancelled_output(elapsed: float, why: str = CANCELLED_NOTE) -> NotebookNode:
    """The stderr line a cell keeps after its call was cancelled (by the client, unless `why` says who)."""
    text = f"[nbmcp] {why} after {elapsed:.1f} s; the kernel was interrupted\n"
    return nbformat.v4.new_output("stream", name="stderr", text=text)


def cell_name(ref: CellRef) -> str:
    """How answers and errors name a cell: its index, and its id when it has one."""
    return f"cell {ref.index} (id {ref.id})" if ref.id else f"cell {ref.index}"
