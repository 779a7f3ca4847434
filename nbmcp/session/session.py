"""NotebookSession: one notebook plus the kernel that runs its code.

This is the Python API behind every MCP tool: the store knows nothing of kernels, the kernel knows
nothing of files, and only the session combines them. Executions do not hold the notebook's lock
while they run; their outputs are written back to the cell by its id (periodically while they stream,
and when they finish), so cells inserted, moved or deleted meanwhile never receive someone else's
outputs.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import itertools
import logging
import operator
import secrets
import threading
import time
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import nbformat
from nbformat import NotebookNode

from ..errors import (
    CellExecutionError,
    CellIndexError,
    CellNotFoundError,
    KernelBusyError,
    KernelError,
    SourceMatchError,
    UsageError,
)
from ..kernels.base import (
    DEFAULT_TIMEOUT,
    INTERRUPT_GRACE,
    ExecutionResult,
    Kernel,
    KernelState,
    NoKernel,
)
from ..kernels.choice import KernelChoice, choose_kernel
from ..kernels.local import LocalKernel
from ..kernels.outputs import OutputCollector, normalize_stream_text, output_text
from ..notebook.journal import (
    BARRIER,
    MAX_JOURNAL_ENTRIES,
    Entry,
    Journal,
    clear_outputs_entry,
    delete_entry,
    insert_entry,
    invert,
    move_entry,
    source_entry,
)
from ..notebook.store import LocalStore, NotebookStore, mark_changed, mark_unknown

__all__ = [
    "CANCELLED_NOTE",
    "CELL_TYPES",
    "DEFAULT_MAX_WAIT",
    "KEPT_EXECUTIONS",
    "MAX_VARIABLES",
    "RAISES_TAG",
    "SKIP_TAG",
    "VARIABLE_REPR_CHARS",
    "WRITEBACK_INTERVAL",
    "BackgroundExecution",
    "CellRef",
    "CellView",
    "Change",
    "Execution",
    "NotebookSession",
    "RunAll",
    "UndoResult",
    "Variable",
]

logger = logging.getLogger(__name__)

CELL_TYPES = ("code", "markdown", "raw")
#: The note saved under the outputs of a cell whose call the client cancelled.
CANCELLED_NOTE = "the client cancelled this call"
#: Seconds between saves of a running cell's outputs while it streams.
WRITEBACK_INTERVAL = 2.0

#: Seconds an execution tool waits before answering with the outputs so far and an execution id
#: (--max-wait): well under the minute some MCP clients give a tool call (issue 15).
DEFAULT_MAX_WAIT = 50.0
#: Finished background executions a session remembers (with their outputs) for wait_for_execution.
KEPT_EXECUTIONS = 20

#: Variables listed by list_variables at most (the largest namespaces are cut, with a note).
MAX_VARIABLES = 500
#: Characters of each variable's repr that list_variables returns.
VARIABLE_REPR_CHARS = 120
#: run_all leaves code cells with this tag alone (nbclient's `skip_cells_with_tag` default).
SKIP_TAG = "skip-execution"
#: run_all goes on after an error in a code cell with this tag (nbclient's rule for it).
RAISES_TAG = "raises-exception"

ProgressCallback = Callable[[float, str], Awaitable[None]]
#: Called by run_all before code cell k (1-based) of n runs.
BeforeCell = Callable[[int, int, "CellRef"], Awaitable[None]]
#: Called by run_all after code cell k (1-based) of n ran.
AfterCell = Callable[[int, int, "Execution"], Awaitable[None]]

# Runs in the kernel for list_variables, wrapped in `exec(..., {})` and with store_history=False: it
# adds no cell, no history entry and no execution count, and defines nothing in the user's namespace.
# The answer comes back as an application/json display, not through stdout, so a repr that prints
# cannot corrupt it.
_VARIABLES_CODE = """\
import reprlib, types
from IPython import get_ipython
from IPython.display import display

short = reprlib.Repr()
short.maxstring = short.maxother = WIDTH
short.maxlist = short.maxtuple = short.maxdict = short.maxset = 10

def describe(name, value):
    kind = type(value)
    module = "" if kind.__module__ == "builtins" else kind.__module__ + "."
    try:
        text = " ".join(short.repr(value).split())
    except Exception as exc:
        text = f"<repr failed: {type(exc).__name__}>"
    if len(text) > WIDTH:
        text = text[: WIDTH - 3] + "..."
    shape = getattr(value, "shape", None) if not isinstance(value, type) else None
    if not (isinstance(shape, tuple) and all(isinstance(n, int) for n in shape)):
        shape = None
    return {"name": name, "type": module + kind.__qualname__, "shape": shape, "repr": text}

ip = get_ipython()
names = sorted(
    name for name, value in list(ip.user_ns.items())
    if not name.startswith("_") and name not in ip.user_ns_hidden and not isinstance(value, types.ModuleType)
)
display(
    {"application/json": {"total": len(names), "variables": [describe(n, ip.user_ns[n]) for n in names[:LIMIT]]}},
    raw=True,
)
"""
#: Makes the kernel for a notebook (given as read when the session opens); default: a local kernel.
KernelFactory = Callable[[NotebookNode], Kernel]


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
        return _name(self.cell) if self.cell is not None else "scratch code (execute_code)"

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


@dataclass(frozen=True)
class UndoResult:
    """What `NotebookSession.undo` took back (newest first) and what is left to undo."""

    undone: list[Change]
    remaining: int
    """Changes still recorded, which a later undo can take back."""
    total_cells: int
    """Cells in the notebook after the undo."""


def _change(step: int, entry: Entry) -> Change:
    return Change(step, entry.kind, entry.time, entry.summary, tuple(entry.cell_ids()))


@dataclass(frozen=True)
class Variable:
    """One variable of the kernel's user namespace, as list_variables reports it."""

    name: str
    type: str
    repr: str
    shape: list[int] | None = None


class EditAbandoned(Exception):
    """Raised inside a worker thread to drop an edit whose call was cancelled; nobody sees it."""


def _cancelled_output(elapsed: float) -> NotebookNode:
    """The stderr line a cell keeps after its call was cancelled by the client."""
    text = f"[nbmcp] {CANCELLED_NOTE} after {elapsed:.1f} s; the kernel was interrupted\n"
    return nbformat.v4.new_output("stream", name="stderr", text=text)


def _source(cell: NotebookNode) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _view(index: int, cell: NotebookNode) -> CellView:
    return CellView(
        index=index,
        id=cell.get("id"),
        cell_type=cell.get("cell_type", "?"),
        source=_source(cell),
        execution_count=cell.get("execution_count"),
        outputs=list(cell.get("outputs", [])),
    )


def _check_index(index: int, n: int) -> int:
    """Resolve a cell index (negative counts from the end) or raise CellIndexError."""
    resolved = index + n if index < 0 else index
    if not 0 <= resolved < n:
        raise CellIndexError(index, n)
    return resolved


def _find_id(nb: NotebookNode, cell_id: str, hint: int | None = None) -> int:
    """The index of the cell with `cell_id`; `hint`, where it was last seen, is looked at first."""
    if hint is not None and 0 <= hint < len(nb.cells) and nb.cells[hint].get("id") == cell_id:
        return hint
    try:
        return operator.indexOf(map(_ID_OF, nb.cells), cell_id)  # the scan runs in C: 10,000 cells in 0.3 ms
    except ValueError:
        raise CellNotFoundError(cell_id) from None


_ID_OF = operator.methodcaller("get", "id")


def _locate(
    nb: NotebookNode, index: int | None, cell_id: str | None, *, what: str = "cell_index", id_name: str = "cell_id"
) -> int:
    """The position of the cell given by index or by id: exactly one of the two."""
    if (index is None) == (cell_id is None):
        raise UsageError(f"give either {what} or {id_name} (exactly one of the two)")
    if cell_id is not None:
        return _find_id(nb, cell_id)
    assert index is not None
    return _check_index(index, len(nb.cells))


def _ref(index: int, cell: NotebookNode) -> CellRef:
    return CellRef(index, cell.get("id"), cell.get("cell_type", "?"))


def _name(ref: CellRef) -> str:
    return f"cell {ref.index} (id {ref.id})" if ref.id else f"cell {ref.index}"


def _diff(old: str, new: str, index: int) -> str:
    """A unified diff of a cell's source; a last line without a newline is marked, as git marks it."""
    lines = difflib.unified_diff(
        old.splitlines(keepends=True),
        new.splitlines(keepends=True),
        fromfile=f"cell {index} (before)",
        tofile=f"cell {index} (after)",
    )
    # difflib glues a line without its final newline to the next one ("-b = 2+b = 3"): end each line.
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of cell\n" for line in lines)


def _new_cell(cell_type: str, source: str) -> NotebookNode:
    if cell_type == "code":
        return nbformat.v4.new_code_cell(source)
    if cell_type == "markdown":
        return nbformat.v4.new_markdown_cell(source)
    if cell_type == "raw":
        return nbformat.v4.new_raw_cell(source)
    raise UsageError(f"cell_type {cell_type!r} is not one of {', '.join(CELL_TYPES)}")


def _check_range(start: int, stop: int | None, n: int) -> range:
    """Resolve run_all's [start, stop) like a Python slice, but refuse a range outside the notebook."""
    if n == 0:
        return range(0)  # nothing to run, whatever was asked
    lo = start + n if start < 0 else start
    if not 0 <= lo < n:
        raise CellIndexError(start, n)
    hi = n if stop is None else stop + n if stop < 0 else stop
    if hi > n:
        raise UsageError(
            f"cannot run up to cell {hi - 1}: the notebook has {n} cells "
            f"(valid: 0 to {n - 1}, or negative indices counting from the end)"
        )
    if hi <= lo:
        raise UsageError(f"the range ends (at cell {hi - 1}) before it starts (at cell {lo}); nothing to run")
    return range(lo, hi)


def _runnable(cell: NotebookNode) -> bool:
    """Whether run_all runs the cell: code, not blank, not tagged skip-execution (as nbclient decides)."""
    tags = cell.get("metadata", {}).get("tags", [])
    return cell.get("cell_type") == "code" and bool(_source(cell).strip()) and SKIP_TAG not in tags


def _ensure_ids(nb: NotebookNode) -> None:
    """Give a 4.4-and-older notebook cell ids by upgrading it to 4.5, as JupyterLab does on save."""
    if nb.nbformat == 4 and nb.nbformat_minor >= 5 and all(map(operator.contains, nb.cells, itertools.repeat("id"))):
        return
    mark_unknown()  # every cell may get an id: the store compares them all
    nb.nbformat, nb.nbformat_minor = 4, max(nb.nbformat_minor, 5)
    taken = {c["id"] for c in nb.cells if "id" in c}
    for cell in nb.cells:
        if "id" not in cell:
            new_id = nbformat.v4.new_code_cell().id
            while new_id in taken:
                new_id = nbformat.v4.new_code_cell().id
            cell["id"] = new_id
            taken.add(new_id)


class NotebookSession:
    """A notebook on disk and its kernel; the API the MCP tools (and CI scripts) call."""

    def __init__(
        self,
        path: Path | str,
        *,
        kernel_name: str | None = None,
        python: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        store: NotebookStore | None = None,
        kernel_factory: KernelFactory | None = None,
        cwd: Path | str | None = None,
        read_only: bool = False,
    ) -> None:
        self.path = Path(path).absolute()
        # The kernel's working folder, and where a .venv is looked for: the notebook's own folder,
        # unless the file run is a copy elsewhere (`nbmcp exec -o`), whose code expects the original's.
        self.cwd = Path(cwd).absolute() if cwd is not None else self.path.parent
        self.store: NotebookStore = store or LocalStore(self.path)
        self.timeout = timeout
        self._kernel_name = kernel_name
        self._python = python
        self._kernel_factory = kernel_factory
        #: --read-only: no kernel starts and no program is run, not even to choose one (issue 12).
        self.read_only = read_only
        self.kernel: Kernel | None = None
        # The undo journal needs the cross-process lock of a local file (issue 15).
        self._journal = Journal(self.store.path) if isinstance(self.store, LocalStore) else None
        #: The notebook object whose cells all have ids (checked once per notebook read from the file).
        self._ids_given: weakref.ref[NotebookNode] | None = None
        #: Background executions, oldest first: the running one and up to KEPT_EXECUTIONS finished ones.
        self._executions: dict[str, BackgroundExecution] = {}
        self._running: BackgroundExecution | None = None
        #: What a blocking call (execute_cell, execute_code, run_all) is running, and since when.
        self._foreground: tuple[str, float] | None = None

    # -- life cycle -------------------------------------------------------------------------------

    async def open(self, *, create: bool = True, start_kernel: bool = True) -> None:
        """Create the notebook if needed, check that it parses, and start its kernel in the background."""
        if create:
            await anyio.to_thread.run_sync(self.store.create_if_missing)
        nb = await self._read()
        if self.read_only:
            self.kernel = NoKernel()
            return
        if self._kernel_factory is not None:
            # A worker thread: choosing a local kernel runs the candidate interpreter once.
            self.kernel = await anyio.to_thread.run_sync(self._kernel_factory, nb)
            if start_kernel:
                self.kernel.start_background()
            return
        metadata_kernel = nb.metadata.get("kernelspec", {}).get("name")
        choice = await anyio.to_thread.run_sync(
            lambda: choose_kernel(
                kernel_name=self._kernel_name,
                python=self._python,
                notebook_kernel=metadata_kernel,
                notebook_dir=self.cwd,
            )
        )
        logger.info("notebook %s: kernel %s", self.path, choice.describe())
        self.kernel = LocalKernel(choice, self.cwd)
        if start_kernel:
            self.kernel.start_background()

    async def close(self) -> None:
        """Stop background executions, shut the kernel down and release the store's connections."""
        for execution in list(self._executions.values()):
            if execution.task is not None and not execution.task.done():
                # Cancelling interrupts the kernel (drive_execution) and saves nothing more.
                execution.task.cancel()
                with contextlib.suppress(BaseException):
                    await execution.task
        if self.kernel is not None:
            await self.kernel.shutdown()
        await anyio.to_thread.run_sync(self.store.close)

    @property
    def kernel_choice(self) -> KernelChoice | None:
        return self.kernel.choice if self.kernel else None

    # -- reading ----------------------------------------------------------------------------------

    async def _read(self) -> NotebookNode:
        nb = self.store.read_if_unchanged()  # a stat on the event loop; a thread only when needed
        return nb if nb is not None else await anyio.to_thread.run_sync(self.store.read)

    async def _edit(self, apply: Callable[[NotebookNode], Any], *, on_saved: Callable[[], None] | None = None) -> Any:
        abandoned = threading.Event()

        def with_ids(nb: NotebookNode) -> Any:
            if abandoned.is_set():
                # The call was cancelled (its client left) while the edit waited for the lock.
                raise EditAbandoned("the call that asked for this edit was cancelled")
            # Every answer names cells by index and id, so the first change of a 4.4 notebook gives
            # it ids (as JupyterLab does on save); reading never changes the file. Looked at once per
            # notebook read from the file: every cell nbmcp adds has an id (a scan costs ~3 ms at 10,000 cells).
            if self._ids_given is None or self._ids_given() is not nb:
                _ensure_ids(nb)
                self._ids_given = weakref.ref(nb)
            return apply(nb)

        store = self.store
        try:
            # abandon_on_cancel: a cancelled call returns at once instead of waiting for the lock,
            # and the flag keeps its edit from being applied afterwards.
            if on_saved is not None and isinstance(store, LocalStore):
                return await anyio.to_thread.run_sync(
                    lambda: store.edit(with_ids, on_saved=on_saved), abandon_on_cancel=True
                )
            return await anyio.to_thread.run_sync(store.edit, with_ids, abandon_on_cancel=True)
        except anyio.get_cancelled_exc_class():
            abandoned.set()
            raise

    async def _journaled(self, apply: Callable[[NotebookNode], tuple[Any, Entry | None]]) -> Any:
        """Run an edit whose `apply` also returns its journal entry, recorded under the same lock."""
        journal = self._journal
        if journal is None:
            return await self._edit(lambda nb: apply(nb)[0])
        pending: list[Entry | None] = [None]

        def run(nb: NotebookNode) -> Any:
            # The store may apply the edit again (the file changed meanwhile): keep the last entry.
            result, pending[0] = apply(nb)
            return result

        def record() -> None:
            entry = pending[0]
            if entry is None:
                return  # the edit changed nothing worth undoing
            try:
                journal.append(entry)
            except (OSError, TypeError, ValueError) as exc:
                # The edit is saved; failing it now would misreport it. Undo then stops at this change
                # (the cells it touched are not as the journal says) instead of taking back a wrong one.
                logger.warning("could not record the change in the undo journal %s: %s", journal.path, exc)

        return await self._edit(run, on_saved=record)

    async def info(self) -> dict[str, Any]:
        """Path, cell counts by type, format version and the kernel's name, state and origin."""
        nb = await self._read()
        counts = Counter(c.get("cell_type", "?") for c in nb.cells)
        kernel: dict[str, Any] = {"state": "not configured"}
        if self.kernel is not None:
            kernel = {
                "name": self.kernel.choice.name,
                "state": self.kernel.state.value,
                "interpreter": self.kernel.choice.argv0,
                "chosen_by": self.kernel.choice.reason,
            }
            if self.kernel.choice.install_hint:
                kernel["install_packages"] = self.kernel.choice.install_hint
            if self.kernel.error:
                kernel["error"] = self.kernel.error
            running = self._running
            if running is not None:
                kernel["running_execution"] = {
                    "execution_id": running.id,
                    "what": running.describe(),
                    "elapsed_seconds": round(running.elapsed, 1),
                }
        info: dict[str, Any] = {
            "path": str(self.store.path),
            "total_cells": len(nb.cells),
            "cell_types": {t: counts.get(t, 0) for t in CELL_TYPES}
            | {k: v for k, v in counts.items() if k not in CELL_TYPES},
            "nbformat": f"{nb.nbformat}.{nb.nbformat_minor}",
            "kernel": kernel,
        }
        original = nb.metadata.get("orig_nbformat")
        if original is not None and original < nb.nbformat:
            # nbformat upgrades old notebooks as it reads them; the file stays as it was until a change.
            info["upgraded_from_nbformat"] = original
            info["note"] = (
                f"the file is nbformat {original}; it was upgraded to {nb.nbformat} when read, and the first "
                f"change saves it as nbformat {nb.nbformat}.{max(nb.nbformat_minor, 5)}"
            )
        return info

    async def read_cell(self, index: int | None = None, *, cell_id: str | None = None) -> CellView:
        """One cell, by index (negative counts from the end) or by id."""
        nb = await self._read()
        i = _locate(nb, index, cell_id)
        return _view(i, nb.cells[i])

    async def read_cells(self) -> list[CellView]:
        """Every cell."""
        return (await self.read_page())[0]

    async def read_page(self, start: int = 0, limit: int | None = None) -> tuple[list[CellView], int]:
        """At most `limit` cells (all when None) from index `start`, and the notebook's cell count."""
        nb = await self._read()
        n = len(nb.cells)
        if start < 0 or (start >= n and start != 0):
            raise UsageError(f"start_index {start} is out of range; the notebook has {n} cells (valid: 0 to {n - 1})")
        if limit is not None and limit < 1:
            raise UsageError(f"limit must be at least 1, not {limit}")
        stop = n if limit is None else min(start + limit, n)
        return [_view(i, nb.cells[i]) for i in range(start, stop)], n

    async def read_output(
        self, index: int | None = None, output_index: int = 0, *, cell_id: str | None = None
    ) -> tuple[CellRef, dict[str, Any]]:
        """One output of a cell, whole, as stored in the file."""
        nb = await self._read()
        i = _locate(nb, index, cell_id)
        cell = nb.cells[i]
        ref = _ref(i, cell)
        outputs = cell.get("outputs", [])
        if not outputs:
            raise UsageError(f"{_name(ref)} has no outputs")
        if not 0 <= output_index < len(outputs):
            raise UsageError(
                f"output_index {output_index} is out of range; {_name(ref)} has {len(outputs)} "
                f"output(s) (valid: 0 to {len(outputs) - 1})"
            )
        return ref, dict(outputs[output_index])

    # -- editing ----------------------------------------------------------------------------------

    async def insert_cell(
        self, index: int | None, cell_type: str, source: str, *, cell_id: str | None = None
    ) -> CellRef:
        """Insert a new cell before `index` (-1 or the cell count appends), or before the cell `cell_id`."""
        _new_cell(cell_type, source)  # a bad cell_type fails before the file is locked

        def apply(nb: NotebookNode) -> tuple[CellRef, Entry]:
            # The store may apply an edit twice (the file changed meanwhile): build the cell here.
            cell = _new_cell(cell_type, source)
            n = len(nb.cells)
            if (index is None) == (cell_id is None):
                raise UsageError("give either cell_index or cell_id (exactly one of the two)")
            if cell_id is not None:
                at = _find_id(nb, cell_id)
            elif index == -1:
                at = n
            elif index is not None and 0 <= index <= n:
                at = index
            else:
                raise CellIndexError(index or 0, n, allow_end=True)
            nb.cells.insert(at, cell)
            mark_changed()  # a new cell, and none changed in place
            return _ref(at, cell), insert_entry(nb, at)

        ref: CellRef = await self._journaled(apply)
        return ref

    async def overwrite_source(
        self, index: int | None, source: str, *, cell_id: str | None = None
    ) -> tuple[CellRef, str]:
        """Replace a cell's source; returns the cell and a unified diff of the change."""

        def apply(nb: NotebookNode) -> tuple[tuple[CellRef, str], Entry | None]:
            i = _locate(nb, index, cell_id)
            cell = nb.cells[i]
            old = _source(cell)
            cell["source"] = source
            mark_changed(cell)
            return (_ref(i, cell), _diff(old, source, i)), source_entry("overwrite", nb, i, old)

        result: tuple[CellRef, str] = await self._journaled(apply)
        return result

    async def edit_source(
        self,
        index: int | None,
        old_string: str,
        new_string: str,
        *,
        replace_all: bool = False,
        cell_id: str | None = None,
    ) -> tuple[CellRef, str, int]:
        """Replace `old_string` by `new_string` in a cell's source; returns the cell, a diff and the count.

        `old_string` must occur exactly once unless `replace_all` is set; otherwise nothing changes and
        SourceMatchError says whether it was absent or ambiguous.
        """
        if not old_string:
            raise UsageError("old_string is empty; give the exact text to replace (overwrite_cell_source replaces all)")
        if old_string == new_string:
            raise UsageError("old_string and new_string are the same; there is nothing to change")

        def apply(nb: NotebookNode) -> tuple[tuple[CellRef, str, int], Entry | None]:
            i = _locate(nb, index, cell_id)
            cell = nb.cells[i]
            old = _source(cell)
            count = old.count(old_string)
            if count == 0 or (count > 1 and not replace_all):
                raise SourceMatchError(_name(_ref(i, cell)), old_string, count)
            new = old.replace(old_string, new_string)
            cell["source"] = new
            mark_changed(cell)
            return (_ref(i, cell), _diff(old, new, i), count), source_entry("edit", nb, i, old)

        result: tuple[CellRef, str, int] = await self._journaled(apply)
        return result

    async def move_cell(
        self, index: int | None, target_index: int, *, cell_id: str | None = None
    ) -> tuple[CellRef, CellRef]:
        """Move a cell so that it ends up at `target_index` (-1 = last); returns where it was and is."""

        def apply(nb: NotebookNode) -> tuple[tuple[CellRef, CellRef], Entry | None]:
            i = _locate(nb, index, cell_id, what="source_index", id_name="source_cell_id")
            n = len(nb.cells)
            try:
                target = _check_index(target_index, n)
            except CellIndexError:
                raise UsageError(
                    f"target_index {target_index} is out of range; the notebook has {n} cells "
                    f"(valid: 0 to {n - 1}, or -1 for the end)"
                ) from None
            prev_before = nb.cells[i - 1].get("id") if i > 0 else None
            mark_changed()  # no cell changes in place
            cell = nb.cells.pop(i)
            nb.cells.insert(target, cell)
            return (_ref(i, cell), _ref(target, cell)), move_entry(nb, i, target, prev_before)

        result: tuple[CellRef, CellRef] = await self._journaled(apply)
        return result

    async def delete_cell(self, index: int | None, *, cell_id: str | None = None) -> CellView:
        """Delete a cell; returns what it held."""

        def apply(nb: NotebookNode) -> tuple[CellView, Entry]:
            i = _locate(nb, index, cell_id)
            entry = delete_entry(nb, i)
            mark_changed()  # no cell changes in place
            return _view(i, nb.cells.pop(i)), entry

        view: CellView = await self._journaled(apply)
        return view

    async def clear_outputs(self, index: int | None, *, cell_id: str | None = None) -> tuple[CellRef, int]:
        """Clear one code cell's outputs and execution count; returns the cell and how many outputs went."""

        def apply(nb: NotebookNode) -> tuple[tuple[CellRef, int], Entry | None]:
            i = _locate(nb, index, cell_id)
            cell = nb.cells[i]
            if cell.get("cell_type") != "code":
                raise UsageError(
                    f"{_name(_ref(i, cell))} is a {cell.get('cell_type')} cell; only code cells have outputs"
                )
            removed = len(cell.get("outputs", []))
            entry = clear_outputs_entry(nb, [i])
            mark_changed(cell)
            cell["outputs"] = []
            cell["execution_count"] = None
            return (_ref(i, cell), removed), entry

        result: tuple[CellRef, int] = await self._journaled(apply)
        return result

    async def clear_all_outputs(self) -> int:
        """Clear the outputs and execution counts of every code cell; returns how many cells had outputs."""

        def apply(nb: NotebookNode) -> tuple[int, Entry | None]:
            entry = clear_outputs_entry(nb, [i for i, c in enumerate(nb.cells) if c.get("cell_type") == "code"])
            cleared = 0
            for cell in nb.cells:
                if cell.get("cell_type") == "code":
                    mark_changed(cell)
                    cleared += bool(cell.get("outputs"))
                    cell["outputs"] = []
                    cell["execution_count"] = None
            return cleared, entry

        cleared: int = await self._journaled(apply)
        return cleared

    # -- undo (issue 15) ----------------------------------------------------------------------------

    def _require_journal(self) -> Journal:
        if self._journal is None:
            raise UsageError(
                f"undo and history work on local notebook files only; {self.store.path} is on a Jupyter server"
            )
        return self._journal

    async def history(self, limit: int | None = None) -> list[Change]:
        """The changes nbmcp made to this notebook that undo can take back, newest first (step 1).

        Every nbmcp process on the notebook (MCP server, CLI, Python API) records into the same journal.
        """
        journal = self._require_journal()
        if limit is not None and limit < 1:
            raise UsageError(f"limit must be at least 1, not {limit}")
        entries = await anyio.to_thread.run_sync(journal.entries)
        changes = [_change(k, e) for k, e in enumerate(reversed(entries), 1)]
        return changes if limit is None else changes[:limit]

    async def undo(self, steps: int = 1) -> UndoResult:
        """Take back the last `steps` changes nbmcp made, newest first, in one write.

        Refuses with UndoConflictError, writing nothing, when a cell it would restore was changed
        since by someone else (or by an nbmcp change not in the journal). Outputs written by
        executions are kept: undoing a source change restores the source, not the outputs.
        """
        journal = self._require_journal()
        if steps < 1:
            raise UsageError(f"steps must be at least 1, not {steps}")
        taken: list[Change] = []

        def apply(nb: NotebookNode) -> int:
            # Read under the notebook's lock: another nbmcp process may have recorded a change since.
            entries = journal.entries()
            if not entries:
                raise UsageError(f"nothing to undo: nbmcp has no recorded change to {self.path}")
            if steps > len(entries):
                valid = f"1 to {len(entries)}" if len(entries) > 1 else "only 1"
                raise UsageError(
                    f"only {len(entries)} change(s) to {self.path.name} are recorded (the journal keeps up to "
                    f"{MAX_JOURNAL_ENTRIES}); steps can be {valid}"
                )
            newest_first = entries[::-1][:steps]
            for step, entry in enumerate(newest_first, 1):
                if entry.kind == BARRIER:
                    raise UsageError(
                        f"change {step} was {entry.summary}; "
                        + (f"steps can be at most {step - 1}" if step > 1 else "nothing can be undone")
                    )
                invert(nb, entry)
            taken[:] = [_change(k, e) for k, e in enumerate(newest_first, 1)]
            return len(nb.cells)

        def forget() -> None:
            try:
                journal.drop_last(len(taken))
            except OSError as exc:
                # The undo is saved. The entries left behind no longer match their cells, so a later
                # undo refuses them instead of applying them twice.
                logger.warning("could not update the undo journal %s: %s", journal.path, exc)

        total: int = await self._edit(apply, on_saved=forget)
        remaining = len(await anyio.to_thread.run_sync(journal.entries))
        return UndoResult(taken, remaining, total)

    async def clear_history(self) -> int:
        """Forget every recorded change to this notebook (undo can then take back nothing); returns how many."""
        journal = self._require_journal()
        store = self.store
        assert isinstance(store, LocalStore)

        def clear() -> int:
            with store.locked():
                return journal.clear()

        return await anyio.to_thread.run_sync(clear)

    # -- execution --------------------------------------------------------------------------------

    def _require_kernel(self) -> Kernel:
        if self.kernel is None:
            raise UsageError("the session is not open; call open() first")
        return self.kernel

    def check_idle(self) -> None:
        """Raise KernelBusyError if an execution is running (one at a time per kernel, issue 15)."""
        if self._running is not None:
            raise KernelBusyError(self._running.describe(), self._running.id, self._running.elapsed)
        if self._foreground is not None:
            what, since = self._foreground
            raise KernelBusyError(what, None, time.monotonic() - since)

    @contextlib.contextmanager
    def _exclusive(self, what: str) -> Iterator[None]:
        """Mark the kernel busy with a blocking call's execution (refused while another one runs)."""
        self.check_idle()
        self._foreground = (what, time.monotonic())
        try:
            yield
        finally:
            self._foreground = None

    async def execute_cell(
        self,
        index: int | None = None,
        *,
        cell_id: str | None = None,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        progress_every: float = 1.0,
    ) -> Execution:
        """Run a code cell in the kernel and save its outputs into that cell (found again by id).

        Waits until the cell ends (or its timeout interrupts it). Raises KernelBusyError if another
        execution is running; `start_cell` is the form that can outlive its caller.
        """
        self._require_kernel()
        with self._exclusive("a cell (execute_cell)"):
            i, code, run_id = await self._prepare_cell(index, cell_id)
            return await self._run_cell(i, code, run_id, timeout, on_progress, progress_every)

    async def _prepare_cell(self, index: int | None, cell_id: str | None) -> tuple[int, str, str]:
        """The cell's index, source and id (given one first, in a notebook without ids)."""
        nb = await self._read()
        i = _locate(nb, index, cell_id)
        cell = nb.cells[i]
        if cell.get("cell_type") != "code":
            raise UsageError(f"cell {i} is a {cell.get('cell_type')} cell; only code cells can be executed")
        code = _source(cell)
        run_id = cell.get("id")
        if run_id is None:
            # Outputs are written back by id, so a notebook without ids gets them first (any edit does).
            run_id = await self._edit(lambda nb: str(nb.cells[_check_index(i, len(nb.cells))].id))
        return i, code, str(run_id)

    async def _run_cell(
        self,
        i: int,
        code: str,
        run_id: str,
        timeout: float | None,
        on_progress: ProgressCallback | None,
        progress_every: float,
        on_collector: Callable[[OutputCollector], None] | None = None,
    ) -> Execution:
        kernel = self._require_kernel()
        last_save = time.monotonic()
        saved_version = -1

        async def hook(collector: OutputCollector, elapsed: float) -> None:
            nonlocal last_save, saved_version
            if on_collector is not None:
                on_collector(collector)
            now = time.monotonic()
            if collector.version != saved_version and now - last_save >= WRITEBACK_INTERVAL:
                saved_version, last_save = collector.version, now
                # Partial outputs: a person watching the notebook sees progress as it happens.
                outputs = [NotebookNode(dict(o)) for o in collector.outputs]
                await self._write_outputs(run_id, outputs, collector.execution_count, hint=i)
            if on_progress is not None:
                await on_progress(elapsed, collector.last_line)

        collector = OutputCollector()
        started = time.monotonic()
        try:
            result = await kernel.execute(
                code,
                timeout=timeout or self.timeout,
                on_progress=hook,
                progress_every=min(progress_every, WRITEBACK_INTERVAL),
                collector=collector,
            )
        except anyio.get_cancelled_exc_class():
            # The client cancelled the call (the kernel was interrupted on the way out): keep what the
            # cell printed, its execution count and a note saying why it stopped; answer nothing more.
            with anyio.CancelScope(shield=True):
                await self._save_cancelled(run_id, collector, time.monotonic() - started)
            raise
        final_index = await self._write_outputs(run_id, result.outputs, result.execution_count, hint=i)
        execution = Execution(CellRef(final_index if final_index is not None else i, run_id, "code"), result)
        if final_index is None:
            execution.saved = False
            execution.notes.append(
                "the cell was deleted while it ran, so its outputs were not saved; they are shown here only"
            )
        elif final_index != i:
            execution.notes.append(f"the cell moved from index {i} to {final_index} while it ran")
        return execution

    async def execute_code(
        self,
        code: str,
        *,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        progress_every: float = 1.0,
    ) -> ExecutionResult:
        """Run `code` in the notebook's kernel without a cell: nothing is saved, the file is not touched.

        store_history=False keeps it out of the kernel's history and execution count, like a console
        command that was never part of the notebook. Raises KernelBusyError if another execution runs.
        """
        self._require_kernel()
        with self._exclusive("scratch code (execute_code)"):
            return await self._run_code(code, timeout, on_progress, progress_every)

    async def _run_code(
        self,
        code: str,
        timeout: float | None,
        on_progress: ProgressCallback | None,
        progress_every: float,
        on_collector: Callable[[OutputCollector], None] | None = None,
    ) -> ExecutionResult:
        kernel = self._require_kernel()

        async def hook(collector: OutputCollector, elapsed: float) -> None:
            if on_collector is not None:
                on_collector(collector)
            if on_progress is not None:
                await on_progress(elapsed, collector.last_line)

        return await kernel.execute(
            code,
            timeout=timeout or self.timeout,
            on_progress=hook if on_progress or on_collector else None,
            progress_every=progress_every,
            store_history=False,
        )

    # -- executions that outlive the call (issue 15) ----------------------------------------------

    async def start_cell(
        self, index: int | None = None, *, cell_id: str | None = None, timeout: float | None = None
    ) -> BackgroundExecution:
        """Start running a code cell in a task owned by the session; returns at once.

        The outputs are saved into the cell (found again by id) while it streams and when it ends,
        whether or not anyone waits for it (`wait_execution`). Raises KernelBusyError if an execution
        is running, and the usual errors for a cell that is not there or not code, before anything runs.
        """
        self._require_kernel()
        self.check_idle()
        i, code, run_id = await self._prepare_cell(index, cell_id)
        job = self._new_execution(CellRef(i, run_id, "code"), timeout)

        async def run() -> None:
            job.execution = await self._run_cell(
                i, code, run_id, job.timeout, self._forward(job), 1.0, on_collector=self._catch(job)
            )
            if job.cancelled_at is not None and job.execution.saved:
                # The client cancelled the call: the cell says so, after what it printed.
                result = job.execution.result
                note = _cancelled_output(job.cancelled_at - job.started)
                await self._write_outputs(run_id, [*result.outputs, note], result.execution_count)

        self._launch(job, run())
        return job

    async def start_code(self, code: str, *, timeout: float | None = None) -> BackgroundExecution:
        """Start running scratch code (as `execute_code`: nothing saved) in a task owned by the session."""
        self._require_kernel()
        self.check_idle()
        job = self._new_execution(None, timeout)

        async def run() -> None:
            job.code_result = await self._run_code(code, job.timeout, self._forward(job), 1.0, self._catch(job))

        self._launch(job, run())
        return job

    async def wait_execution(
        self,
        execution: BackgroundExecution,
        seconds: float,
        *,
        on_progress: ProgressCallback | None = None,
        progress_every: float = 1.0,
        interrupt_if_cancelled: bool = False,
    ) -> BackgroundExecution:
        """Wait up to `seconds` for `execution` to end; returns it, finished or still running.

        `on_progress` gets the elapsed time and latest output line every `progress_every` seconds
        (ticks come about once a second) while this call waits. If the wait is cancelled and
        `interrupt_if_cancelled` is set (the call that started the execution was cancelled by its
        client), the kernel is interrupted, as a cancelled execution always was; otherwise the
        execution goes on.
        """
        task = execution.task
        if task is None or task.done():
            return execution
        execution.on_progress = on_progress
        execution.progress_every = progress_every
        execution.next_progress = time.monotonic() + progress_every
        try:
            # asyncio.wait neither raises on timeout nor cancels the task it waits for.
            await asyncio.wait({task}, timeout=max(seconds, 0))
        except BaseException:
            if interrupt_if_cancelled and execution.running and self.kernel is not None:
                execution.cancelled_at = time.monotonic()
                with anyio.CancelScope(shield=True):
                    logger.info("the call running %s was cancelled; interrupting the kernel", execution.describe())
                    await self.kernel.interrupt()
            raise
        finally:
            if execution.on_progress is on_progress:
                execution.on_progress = None
        return execution

    def execution(self, execution_id: str) -> BackgroundExecution:
        """The execution with this id (running, or one of the last KEPT_EXECUTIONS finished)."""
        found = self._executions.get(execution_id)
        if found is None:
            known = ", ".join(repr(k) for k in reversed(self._executions)) or "none"
            raise UsageError(
                f"no execution {execution_id!r} in {self.path.name} (known: {known}); list_executions shows them. "
                f"Finished executions are kept for the last {KEPT_EXECUTIONS} only; the cell's saved outputs "
                "(read_cell) remain."
            )
        return found

    def executions(self) -> list[BackgroundExecution]:
        """The running execution (if any) and the recently finished ones, newest first."""
        return list(reversed(self._executions.values()))

    @property
    def running_execution(self) -> BackgroundExecution | None:
        return self._running

    def _new_execution(self, cell: CellRef | None, timeout: float | None) -> BackgroundExecution:
        # Checked again here, with no await since: two calls racing cannot both start.
        self.check_idle()
        execution_id = secrets.token_hex(4)
        while execution_id in self._executions:
            execution_id = secrets.token_hex(4)
        job = BackgroundExecution(execution_id, cell, time.monotonic(), timeout or self.timeout)
        self._executions[execution_id] = job
        self._running = job
        return job

    def _forget_old_executions(self) -> None:
        finished = [k for k, e in self._executions.items() if not e.running]
        for k in finished[: max(len(finished) - KEPT_EXECUTIONS, 0)]:
            del self._executions[k]

    def _launch(self, job: BackgroundExecution, body: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await body
            except Exception as exc:
                # Kept for whoever waits: a kernel that could not start, a save that failed.
                logger.exception("%s failed", job.describe())
                job.error = exc
            finally:
                job.finished = time.monotonic()
                if self._running is job:
                    self._running = None
                self._forget_old_executions()

        # The task runs in a copy of the starting call's context: what it logs while that call waits
        # reaches that call's client (ClientLog), and once the call has answered, every client.
        job.task = asyncio.get_running_loop().create_task(run())

    @staticmethod
    def _catch(job: BackgroundExecution) -> Callable[[OutputCollector], None]:
        def catch(collector: OutputCollector) -> None:
            job.collector = collector

        return catch

    @staticmethod
    def _forward(job: BackgroundExecution) -> ProgressCallback:
        """Progress for whichever call waits for the job now; a failing callback never stops the cell."""

        async def forward(elapsed: float, last_line: str) -> None:
            callback = job.on_progress
            now = time.monotonic()
            if callback is None or now < job.next_progress:
                return
            job.next_progress = now + job.progress_every
            try:
                await callback(elapsed, last_line)
            except Exception:  # the waiting client went away: the execution goes on
                logger.debug("progress for %s not delivered", job.describe(), exc_info=True)
                if job.on_progress is callback:
                    job.on_progress = None

        return forward

    async def list_variables(self) -> tuple[list[Variable], int]:
        """The user's variables in the kernel (name, type, shape, short repr) and how many there are.

        Modules and names starting with "_" are left out; at most MAX_VARIABLES are returned.
        """
        code = _VARIABLES_CODE.replace("WIDTH", str(VARIABLE_REPR_CHARS)).replace("LIMIT", str(MAX_VARIABLES))
        result = await self.execute_code(f"exec({code!r}, {{}})", timeout=min(self.timeout, 30.0))
        for output in result.outputs:
            data = output.get("data", {}).get("application/json")
            if isinstance(data, dict) and "variables" in data:
                variables = [
                    Variable(v["name"], v["type"], v["repr"], list(v["shape"]) if v.get("shape") else None)
                    for v in data["variables"]
                ]
                return variables, int(data["total"])
        problem = "; ".join(
            f"{o.get('ename')}: {o.get('evalue')}" if o.get("output_type") == "error" else str(o.get("text", ""))
            for o in result.outputs
        )
        raise KernelError(
            f"could not list the kernel's variables ({result.status}{': ' + problem if problem else ''}); "
            "list_variables needs an IPython kernel (Python)"
        )

    async def run_all(
        self,
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
        """
        if self.kernel is None:
            raise UsageError("the session is not open; call open() first")
        with self._exclusive("a run of many cells (execute_all_cells)"):
            return await self._run_all(
                start, stop, timeout, stop_on_error, before_cell, after_cell, on_progress, progress_every
            )

    async def _run_all(
        self,
        start: int,
        stop: int | None,
        timeout: float | None,
        stop_on_error: bool,
        before_cell: BeforeCell | None,
        after_cell: AfterCell | None,
        on_progress: ProgressCallback | None,
        progress_every: float,
    ) -> RunAll:
        started = time.monotonic()
        nb = await self._read()
        selected = _check_range(start, stop, len(nb.cells))
        if any(_runnable(nb.cells[i]) and "id" not in nb.cells[i] for i in selected):
            # The run follows its cells by id, so cells inserted or moved meanwhile do not shift it.

            def add_ids(nb: NotebookNode) -> NotebookNode:
                _ensure_ids(nb)
                return nb

            nb = await self._edit(add_ids)
        plan = [
            (str(nb.cells[i].id), RAISES_TAG in nb.cells[i].get("metadata", {}).get("tags", []))
            for i in selected
            if _runnable(nb.cells[i])
        ]
        run = RunAll([], len(plan), 0.0)
        for k, (cell_id, may_raise) in enumerate(plan, 1):
            if before_cell is not None:
                index = await self._index_of(cell_id)
                if index is not None:
                    await before_cell(k, len(plan), CellRef(index, cell_id, "code"))
            try:
                # By id: the callback (or a person) may have moved it since the plan was made.
                i, code, run_id = await self._prepare_cell(None, cell_id)
                execution = await self._run_cell(i, code, run_id, timeout, on_progress, progress_every)
            except CellNotFoundError:
                run.notes.append(f"cell id {cell_id} was deleted before its turn; it was not run")
                continue
            run.executions.append(execution)
            if after_cell is not None:
                await after_cell(k, len(plan), execution)
            status = execution.result.status
            if status == "ok" or (status == "error" and (may_raise or not stop_on_error)):
                continue
            run.failed = execution
            break
        run.elapsed = time.monotonic() - started
        return run

    async def _index_of(self, cell_id: str) -> int | None:
        try:
            return _find_id(await self._read(), cell_id)
        except CellNotFoundError:
            return None

    async def _save_cancelled(self, cell_id: str, collector: OutputCollector, elapsed: float) -> None:
        outputs = [NotebookNode(dict(o)) for o in collector.finish()] + [_cancelled_output(elapsed)]
        try:
            await self._write_outputs(cell_id, outputs, collector.execution_count)
        except Exception as exc:  # the call is over either way; the file keeps what it had
            logger.warning("could not save the outputs of a cancelled cell: %s", exc)

    async def _write_outputs(
        self, cell_id: str, outputs: list[NotebookNode], count: int | None, *, hint: int | None = None
    ) -> int | None:
        """Save outputs into the cell with `cell_id` (last seen at `hint`); its index, or None if it is gone."""

        def apply(nb: NotebookNode) -> int:
            i = _find_id(nb, cell_id, hint)
            mark_changed(nb.cells[i])
            nb.cells[i]["outputs"] = outputs
            nb.cells[i]["execution_count"] = count
            return i

        try:
            index: int = await self._edit(apply)
        except CellNotFoundError:
            return None
        return index

    async def interrupt(self) -> bool:
        """Interrupt the running code; returns False when the kernel was not running anything."""
        kernel = self._require_kernel()
        busy = kernel.state == KernelState.BUSY
        await kernel.interrupt()
        return busy

    async def restart_kernel(self) -> None:
        """Restart the kernel: every variable is lost; the notebook file is not touched.

        The kernel's restart stops a running execution at once (its call, or its background task,
        answers with the outputs so far and a note), so the restart never waits for a stuck cell.
        """
        kernel = self._require_kernel()
        running = self._running
        await kernel.restart()
        if running is not None and running.task is not None:
            # Let the stopped background execution save its outputs before the answer goes out.
            with anyio.move_on_after(INTERRUPT_GRACE):
                await asyncio.wait({running.task})
