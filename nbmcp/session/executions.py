"""Running code: one execution at a time per kernel, in the foreground or in tasks that outlive their call.

Executions do not hold the notebook's lock while they run; their outputs are written back to the cell
by its id (every WRITEBACK_INTERVAL seconds while they stream, and when they finish), so cells
inserted, moved or deleted meanwhile never receive someone else's outputs. An execution tool waits
for a background execution up to --max-wait and then answers with its id; `wait_execution` picks it
up later (issue 15).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import anyio
from nbformat import NotebookNode

from ..errors import KernelBusyError, UsageError
from ..kernels.base import INTERRUPT_GRACE, ExecutionResult, Kernel, KernelState
from ..kernels.outputs import OutputCollector
from .cells import cell_source, check_index, locate
from .document import Document
from .frontend import SavedFrontend
from .results import CANCELLED_NOTE, BackgroundExecution, CellRef, Execution, ProgressCallback, cancelled_output

__all__ = ["DEFAULT_MAX_WAIT", "HEADLESS_SAVE_INTERVAL", "KEPT_EXECUTIONS", "WRITEBACK_INTERVAL", "Executions"]

logger = logging.getLogger(__name__)

#: Seconds between saves of a running cell's outputs while it streams.
WRITEBACK_INTERVAL = 2.0
#: Seconds between saves in a headless run (`nbmcp exec`), which saves its finished cells together:
#: a save after every cell cost about 4 ms of a light cell's 7 (papermill saves every 30 s, nbclient
#: once at the end). The run saves what is left when it ends, however it ends.
HEADLESS_SAVE_INTERVAL = 1.0
#: Seconds an execution tool waits before answering with the outputs so far and an execution id
#: (--max-wait): well under the minute some MCP clients give a tool call (issue 15).
DEFAULT_MAX_WAIT = 50.0
#: Finished background executions a session remembers (with their outputs) for wait_execution.
KEPT_EXECUTIONS = 20


class Executions:
    """The kernel of one notebook and what runs on it: at most one execution at a time."""

    def __init__(self, document: Document, path: Path, timeout: float) -> None:
        self.document = document
        self.path = path
        self.timeout = timeout
        self.kernel: Kernel | None = None
        #: Background executions, oldest first: the running one and up to KEPT_EXECUTIONS finished ones.
        self._executions: dict[str, BackgroundExecution] = {}
        self._running: BackgroundExecution | None = None
        #: What a blocking call (execute_cell, execute_code, run_all) is running, and since when.
        self._foreground: tuple[str, float] | None = None
        #: Who cancelled, in the line a cancelled cell keeps (a headless run: a signal, not an MCP client).
        self.cancelled_by = CANCELLED_NOTE
        #: Display ids, widget state and Output widgets across this notebook's executions (issue 26).
        self.frontend = SavedFrontend()
        #: Finished cells whose outputs a headless run has not saved yet: (cell id, outputs, count).
        self.unsaved: list[tuple[str, list[NotebookNode], int | None]] = []

    async def cancel_all(self) -> None:
        """Cancel the background executions still running (each interrupts the kernel, saves nothing more)."""
        for execution in list(self._executions.values()):
            if execution.task is not None and not execution.task.done():
                execution.task.cancel()
                with contextlib.suppress(BaseException):
                    await execution.task

    def require_kernel(self) -> Kernel:
        """The kernel, or a UsageError before the session is opened."""
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
    def exclusive(self, what: str) -> Iterator[None]:
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
        self.require_kernel()
        with self.exclusive("a cell (execute_cell)"):
            i, code, run_id = await self.prepare_cell(index, cell_id)
            return await self.run_cell(i, code, run_id, timeout, on_progress, progress_every)

    async def prepare_cell(self, index: int | None, cell_id: str | None) -> tuple[int, str, str]:
        """The cell's index, source and id (given one first, in a notebook without ids)."""
        nb = await self.document.read()
        i = locate(nb, index, cell_id)
        cell = nb.cells[i]
        if cell.get("cell_type") != "code":
            raise UsageError(f"cell {i} is a {cell.get('cell_type')} cell; only code cells can be executed")
        code = cell_source(cell)
        run_id = cell.get("id")
        if run_id is None:
            # Outputs are written back by id, so a notebook without ids gets them first (any edit does).
            run_id = await self.document.edit(lambda nb: str(nb.cells[check_index(i, len(nb.cells))].id))
        return i, code, str(run_id)

    async def run_cell(
        self,
        i: int,
        code: str,
        run_id: str,
        timeout: float | None,
        on_progress: ProgressCallback | None,
        progress_every: float,
        on_collector: Callable[[OutputCollector], None] | None = None,
        *,
        save: bool = True,
    ) -> Execution:
        """Run the code cell `i` (id `run_id`) and save its outputs; `save=False` leaves them in `unsaved`."""
        kernel = self.require_kernel()
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
                await self.document.write_outputs(
                    run_id, outputs, collector.execution_count, hint=i, also=self.frontend.changes(self.kernel)
                )
            if on_progress is not None:
                await on_progress(elapsed, collector.last_line)

        collector = OutputCollector(self.frontend, run_id)
        started = time.monotonic()
        # The live view shows the running cell and its outputs as they arrive (issue 22).
        self.document.activity.cell_started(run_id, collector)
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
        finally:
            self.document.activity.cell_finished(run_id)
        if not save:
            self.unsaved.append((run_id, result.outputs, result.execution_count))
            return Execution(CellRef(i, run_id, "code"), result)
        final_index = await self.document.write_outputs(
            run_id, result.outputs, result.execution_count, hint=i, also=self.frontend.changes(self.kernel)
        )
        execution = Execution(CellRef(final_index if final_index is not None else i, run_id, "code"), result)
        if final_index is None:
            execution.saved = False
            execution.notes.append(
                "the cell was deleted while it ran, so its outputs were not saved; they are shown here only"
            )
        elif final_index != i:
            execution.notes.append(f"the cell moved from index {i} to {final_index} while it ran")
        return execution

    async def save_unsaved(self) -> None:
        """Save the outputs `run_cell(save=False)` left, in one write (with the display updates they caused)."""
        if self.unsaved:
            unsaved, self.unsaved = self.unsaved, []
            await self.document.write_many_outputs(unsaved, also=self.frontend.changes(self.kernel))

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
        self.require_kernel()
        with self.exclusive("scratch code (execute_code)"):
            return await self._run_code(code, timeout, on_progress, progress_every)

    async def _run_code(
        self,
        code: str,
        timeout: float | None,
        on_progress: ProgressCallback | None,
        progress_every: float,
        on_collector: Callable[[OutputCollector], None] | None = None,
    ) -> ExecutionResult:
        kernel = self.require_kernel()

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
            collector=OutputCollector(self.frontend),
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
        self.require_kernel()
        self.check_idle()
        i, code, run_id = await self.prepare_cell(index, cell_id)
        job = self._new_execution(CellRef(i, run_id, "code"), timeout)

        async def run() -> None:
            job.execution = await self.run_cell(
                i, code, run_id, job.timeout, self._forward(job), 1.0, on_collector=self._catch(job)
            )
            if job.cancelled_at is not None and job.execution.saved:
                # The client cancelled the call: the cell says so, after what it printed.
                result = job.execution.result
                note = cancelled_output(job.cancelled_at - job.started)
                await self.document.write_outputs(run_id, [*result.outputs, note], result.execution_count)

        self._launch(job, run())
        return job

    async def start_code(self, code: str, *, timeout: float | None = None) -> BackgroundExecution:
        """Start running scratch code (as `execute_code`: nothing saved) in a task owned by the session."""
        self.require_kernel()
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

    async def _save_cancelled(self, cell_id: str, collector: OutputCollector, elapsed: float) -> None:
        outputs = [NotebookNode(dict(o)) for o in collector.finish()] + [cancelled_output(elapsed, self.cancelled_by)]
        try:
            await self.document.write_outputs(cell_id, outputs, collector.execution_count)
        except Exception as exc:  # the call is over either way; the file keeps what it had
            logger.warning("could not save the outputs of a cancelled cell: %s", exc)

    async def interrupt(self) -> bool:
        """Interrupt the running code; returns False when the kernel was not running anything."""
        kernel = self.require_kernel()
        busy = kernel.state == KernelState.BUSY
        await kernel.interrupt()
        return busy

    async def restart_kernel(self) -> None:
        """Restart the kernel: every variable is lost; the notebook file is not touched.

        The kernel's restart stops a running execution at once (its call, or its background task,
        answers with the outputs so far and a note), so the restart never waits for a stuck cell.
        """
        kernel = self.require_kernel()
        running = self._running
        await kernel.restart()
        if running is not None and running.task is not None:
            # Let the stopped background execution save its outputs before the answer goes out.
            with anyio.move_on_after(INTERRUPT_GRACE):
                await asyncio.wait({running.task})
