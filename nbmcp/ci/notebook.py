"""`Notebook`: the blocking Python API for scripts and CI jobs.

Each method forwards to the async `NotebookSession` behind the MCP tools (the same code path, not a
second implementation), run on a private event loop in a background thread. So a plain script, or a
Jupyter cell that already has an event loop of its own, can write::

    with Notebook("report.ipynb") as nb:
        nb.add_markdown("# Report")
        nb.add_code("print(6 * 7)", run=True)
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeVar, overload

from ..kernels.base import DEFAULT_TIMEOUT
from ..session.results import CellRef, CellView, Execution, RunAll
from ..session.session import NotebookSession
from .batch import NotebookJob, NotebookResult, RunOptions, run_notebook

__all__ = ["Notebook"]

T = TypeVar("T")


class Notebook:
    """A notebook file and its kernel, driven by blocking calls; use it as a context manager.

    `path` is created (empty, nbformat 4.5) if it does not exist, unless `create` is False. The kernel
    is chosen as for the `nbmcp` command (`kernel_name`, `python`, the notebook's metadata, a `.venv`
    beside it, this Python) and runs in the notebook's folder. Every change is saved to the file at
    once. Executions return an `Execution` (outputs, status); with `check=True` a cell that raises,
    times out or kills its kernel raises `CellExecutionError` instead, as nbclient does.
    """

    @staticmethod
    def run(
        path: Path | str,
        output: Path | str | None = None,
        *,
        parameters: dict[str, Any] | None = None,
        kernel_name: str | None = None,
        python: str | None = None,
        timeout: float | None = None,
        stop_on_error: bool | None = None,
        check: bool = True,
    ) -> NotebookResult:
        """Run a whole notebook on a fresh kernel, as `nbmcp exec` does; the papermill-style entry point.

        With `output`, the run (outputs, injected parameters, `metadata.papermill`) is written there and
        `path` is left byte-identical; without it, `path` itself is run and saved. `parameters` go
        into a cell tagged `injected-parameters` with the source papermill would inject (after the
        cell tagged `parameters`, or first). The kernel runs in `path`'s folder. `timeout` (per cell)
        and `stop_on_error` default to the notebook's `metadata.execution` `timeout` and `allow_errors`
        (nbmake's keys), else DEFAULT_TIMEOUT and True. A cell calling `sys.exit(0)` ends the run as a
        success, as in papermill. The kernel keeps IPython's history in memory. With `check` (the
        default), a failed run raises: CellExecutionError for the cell that stopped it, NbmcpError if
        the notebook could not be read or its kernel could not start; else see `result.status`.

            Notebook.run("report.ipynb", "out/report-21.ipynb", parameters={"alpha": 21})
        """
        source = Path(path).absolute()
        job = NotebookJob(source, Path(output).absolute() if output is not None else source, parameters)

        async def go() -> NotebookResult:
            options = RunOptions(timeout, None if stop_on_error is None else not stop_on_error)
            return await run_notebook(job, kernel_name=kernel_name, python=python, options=options)

        result = _run_in_thread(go)
        return result.raise_for_status() if check else result

    def __init__(
        self,
        path: Path | str,
        *,
        kernel_name: str | None = None,
        python: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        create: bool = True,
    ) -> None:
        self.session = NotebookSession(path, kernel_name=kernel_name, python=python, timeout=timeout)
        self._create = create
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def path(self) -> Path:
        return self.session.path

    # -- life cycle -------------------------------------------------------------------------------

    def open(self) -> Notebook:
        """Create the file if needed and start the kernel in the background; returns self."""
        if self._loop is not None:
            return self
        loop = asyncio.new_event_loop()
        # A daemon thread: a script that forgets close() still exits (the kernel notices its parent
        # is gone and stops too), rather than hanging at interpreter shutdown.
        thread = threading.Thread(target=loop.run_forever, name="nbmcp-notebook", daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        try:
            self._call(self.session.open(create=self._create))
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Shut the kernel down and stop the background thread. Safe to call twice."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            self._call(self.session.close())
        finally:
            self._loop = self._thread = None
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()

    def __enter__(self) -> Notebook:
        return self.open()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the notebook's loop and wait for it; Ctrl+C cancels it (interrupting the kernel)."""
        if self._loop is None:
            coro.close()
            raise RuntimeError("the notebook is not open: use `with Notebook(path) as nb:` or call open()")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    # -- reading ----------------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """Path, cell counts by type, format version and the kernel's name, state and origin."""
        return self._call(self.session.info())

    def read_cell(self, index: int) -> CellView:
        return self._call(self.session.read_cell(index))

    def read_cells(self) -> list[CellView]:
        return self._call(self.session.read_cells())

    # -- editing ----------------------------------------------------------------------------------

    def insert_cell(self, index: int, cell_type: str, source: str) -> CellRef:
        """Insert a cell ("code", "markdown" or "raw") before `index`; -1 appends."""
        return self._call(self.session.insert_cell(index, cell_type, source))

    def add_markdown(self, source: str) -> CellRef:
        """Append a markdown cell."""
        return self.insert_cell(-1, "markdown", source)

    @overload
    def add_code(
        self, source: str, *, run: Literal[False] = False, timeout: float | None = None, check: bool = True
    ) -> CellRef: ...

    @overload
    def add_code(
        self, source: str, *, run: Literal[True], timeout: float | None = None, check: bool = True
    ) -> Execution: ...

    def add_code(
        self, source: str, *, run: bool = False, timeout: float | None = None, check: bool = True
    ) -> CellRef | Execution:
        """Append a code cell; with `run=True`, run it too and return its `Execution`.

        With `check` (the default), a run that raises, times out or kills the kernel raises
        CellExecutionError; its outputs are saved in the cell either way.
        """
        ref = self.insert_cell(-1, "code", source)
        if not run:
            return ref
        return self.execute_cell(ref.index, timeout=timeout, check=check)

    def overwrite_source(self, index: int, source: str) -> tuple[CellRef, str]:
        """Replace a cell's source; returns the cell and a unified diff."""
        return self._call(self.session.overwrite_source(index, source))

    def delete_cell(self, index: int) -> CellView:
        return self._call(self.session.delete_cell(index))

    # -- execution --------------------------------------------------------------------------------

    def execute_cell(self, index: int, *, timeout: float | None = None, check: bool = True) -> Execution:
        """Run a code cell and save its outputs; see `add_code` for `check`."""
        execution = self._call(self.session.execute_cell(index, timeout=timeout))
        return execution.raise_for_status() if check else execution

    def run_all(
        self,
        start: int = 0,
        stop: int | None = None,
        *,
        timeout: float | None = None,
        stop_on_error: bool = True,
        check: bool = True,
        before_cell: Callable[[int, int, CellRef], object] | None = None,
        after_cell: Callable[[int, int, Execution], object] | None = None,
    ) -> RunAll:
        """Run the code cells of `cells[start:stop]` in order (see `NotebookSession.run_all`).

        `before_cell(k, n, cell)` and `after_cell(k, n, execution)` are called around code cell k of n
        (from the notebook's own thread), e.g. to print progress. With `check`, the cell that stopped
        the run raises CellExecutionError.
        """

        async def before(k: int, n: int, ref: CellRef) -> None:
            if before_cell is not None:
                before_cell(k, n, ref)

        async def after(k: int, n: int, execution: Execution) -> None:
            if after_cell is not None:
                after_cell(k, n, execution)

        result = self._call(
            self.session.run_all(
                start, stop, timeout=timeout, stop_on_error=stop_on_error, before_cell=before, after_cell=after
            )
        )
        return result.raise_for_status() if check else result

    def interrupt(self) -> None:
        """Interrupt whatever the kernel is running (from another thread)."""
        self._call(self.session.interrupt())

    def restart_kernel(self) -> None:
        """Restart the kernel; its variables are lost."""
        self._call(self.session.restart_kernel())


def _run_in_thread(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine on a new event loop in a thread of its own: works even under a running loop (Jupyter)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(make())
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name="nbmcp-run", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]
