"""NotebookSession: one notebook plus the kernel that runs its code.

This is the Python API behind every MCP tool: the store knows nothing of kernels, the kernel knows
nothing of files, and only the session combines them. Executions do not hold the notebook's lock
while they run; their outputs are written back to the cell by its id (periodically while they stream,
and when they finish), so cells inserted, moved or deleted meanwhile never receive someone else's
outputs.
"""

from __future__ import annotations

import difflib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import nbformat
from nbformat import NotebookNode

from .errors import CellIndexError, CellNotFoundError, UsageError
from .kernel import (
    DEFAULT_TIMEOUT,
    ExecutionResult,
    KernelChoice,
    LocalKernel,
    choose_kernel,
)
from .outputs import OutputCollector
from .store import LocalStore

__all__ = ["CELL_TYPES", "WRITEBACK_INTERVAL", "CellRef", "CellView", "Execution", "NotebookSession"]

logger = logging.getLogger(__name__)

CELL_TYPES = ("code", "markdown", "raw")
#: Seconds between saves of a running cell's outputs while it streams.
WRITEBACK_INTERVAL = 2.0

ProgressCallback = Callable[[float, str], Awaitable[None]]


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


def _find_id(nb: NotebookNode, cell_id: str) -> int:
    for i, cell in enumerate(nb.cells):
        if cell.get("id") == cell_id:
            return i
    raise CellNotFoundError(cell_id)


def _new_cell(cell_type: str, source: str) -> NotebookNode:
    if cell_type == "code":
        return nbformat.v4.new_code_cell(source)
    if cell_type == "markdown":
        return nbformat.v4.new_markdown_cell(source)
    if cell_type == "raw":
        return nbformat.v4.new_raw_cell(source)
    raise UsageError(f"cell_type {cell_type!r} is not one of {', '.join(CELL_TYPES)}")


def _ensure_ids(nb: NotebookNode) -> None:
    """Give a 4.4-and-older notebook cell ids by upgrading it to 4.5, as JupyterLab does on save."""
    if nb.nbformat == 4 and nb.nbformat_minor >= 5 and all("id" in c for c in nb.cells):
        return
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
        store: LocalStore | None = None,
    ) -> None:
        self.path = Path(path).absolute()
        self.store = store or LocalStore(self.path)
        self.timeout = timeout
        self._kernel_name = kernel_name
        self._python = python
        self.kernel: LocalKernel | None = None

    # -- life cycle -------------------------------------------------------------------------------

    async def open(self, *, create: bool = True, start_kernel: bool = True) -> None:
        """Create the notebook if needed, check that it parses, and start its kernel in the background."""
        if create:
            await anyio.to_thread.run_sync(self.store.create_if_missing)
        nb = await self._read()
        metadata_kernel = nb.metadata.get("kernelspec", {}).get("name")
        choice = choose_kernel(
            kernel_name=self._kernel_name,
            python=self._python,
            notebook_kernel=metadata_kernel,
            notebook_dir=self.path.parent,
        )
        logger.info("notebook %s: kernel %s", self.path, choice.describe())
        self.kernel = LocalKernel(choice, self.path.parent)
        if start_kernel:
            self.kernel.start_background()

    async def close(self) -> None:
        """Shut the kernel down."""
        if self.kernel is not None:
            await self.kernel.shutdown()

    @property
    def kernel_choice(self) -> KernelChoice | None:
        return self.kernel.choice if self.kernel else None

    # -- reading ----------------------------------------------------------------------------------

    async def _read(self) -> NotebookNode:
        nb = self.store.read_if_unchanged()  # a stat on the event loop; a thread only when needed
        return nb if nb is not None else await anyio.to_thread.run_sync(self.store.read)

    async def _edit(self, apply: Callable[[NotebookNode], Any]) -> Any:
        return await anyio.to_thread.run_sync(self.store.edit, apply)

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
            if self.kernel.error:
                kernel["error"] = self.kernel.error
        return {
            "path": str(self.path),
            "total_cells": len(nb.cells),
            "cell_types": {t: counts.get(t, 0) for t in CELL_TYPES}
            | {k: v for k, v in counts.items() if k not in CELL_TYPES},
            "nbformat": f"{nb.nbformat}.{nb.nbformat_minor}",
            "kernel": kernel,
        }

    async def read_cell(self, index: int) -> CellView:
        nb = await self._read()
        i = _check_index(index, len(nb.cells))
        return _view(i, nb.cells[i])

    async def read_cells(self) -> list[CellView]:
        nb = await self._read()
        return [_view(i, c) for i, c in enumerate(nb.cells)]

    # -- editing ----------------------------------------------------------------------------------

    async def insert_cell(self, index: int, cell_type: str, source: str) -> CellRef:
        """Insert a new cell before `index`; -1 (or the cell count) appends."""
        cell = _new_cell(cell_type, source)

        def apply(nb: NotebookNode) -> CellRef:
            n = len(nb.cells)
            if index == -1:
                at = n
            elif 0 <= index <= n:
                at = index
            else:
                raise CellIndexError(index, n, allow_end=True)
            _ensure_ids(nb)
            nb.cells.insert(at, cell)
            return CellRef(at, cell.get("id"), cell_type)

        ref: CellRef = await self._edit(apply)
        return ref

    async def overwrite_source(self, index: int, source: str) -> tuple[CellRef, str]:
        """Replace a cell's source; returns the cell and a unified diff of the change."""

        def apply(nb: NotebookNode) -> tuple[CellRef, str]:
            i = _check_index(index, len(nb.cells))
            cell = nb.cells[i]
            old = _source(cell)
            cell["source"] = source
            diff = "".join(
                difflib.unified_diff(
                    old.splitlines(keepends=True),
                    source.splitlines(keepends=True),
                    fromfile=f"cell {i} (before)",
                    tofile=f"cell {i} (after)",
                )
            )
            return CellRef(i, cell.get("id"), cell.get("cell_type", "?")), diff

        result: tuple[CellRef, str] = await self._edit(apply)
        return result

    async def delete_cell(self, index: int) -> CellView:
        """Delete a cell; returns what it held."""

        def apply(nb: NotebookNode) -> CellView:
            i = _check_index(index, len(nb.cells))
            return _view(i, nb.cells.pop(i))

        view: CellView = await self._edit(apply)
        return view

    # -- execution --------------------------------------------------------------------------------

    async def execute_cell(
        self,
        index: int,
        *,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        progress_every: float = 1.0,
    ) -> Execution:
        """Run a code cell in the kernel and save its outputs into that cell (found again by id)."""
        if self.kernel is None:
            raise UsageError("the session is not open; call open() first")
        nb = await self._read()
        i = _check_index(index, len(nb.cells))
        cell = nb.cells[i]
        if cell.get("cell_type") != "code":
            raise UsageError(f"cell {i} is a {cell.get('cell_type')} cell; only code cells can be executed")
        cell_id = cell.get("id")
        if cell_id is None:
            # Outputs are written back by id, so a notebook without ids gets them first.

            def add_ids(nb: NotebookNode) -> str:
                _ensure_ids(nb)
                return str(nb.cells[_check_index(index, len(nb.cells))].id)

            cell_id = await self._edit(add_ids)
        code = _source(cell)
        last_save = time.monotonic()
        saved_version = -1

        async def hook(collector: OutputCollector, elapsed: float) -> None:
            nonlocal last_save, saved_version
            now = time.monotonic()
            if collector.version != saved_version and now - last_save >= WRITEBACK_INTERVAL:
                saved_version, last_save = collector.version, now
                # Partial outputs: a person watching the notebook sees progress as it happens.
                outputs = [NotebookNode(dict(o)) for o in collector.outputs]
                await self._write_outputs(cell_id, outputs, collector.execution_count)
            if on_progress is not None:
                await on_progress(elapsed, collector.last_line)

        result = await self.kernel.execute(
            code,
            timeout=timeout or self.timeout,
            on_progress=hook,
            progress_every=min(progress_every, WRITEBACK_INTERVAL),
        )
        final_index = await self._write_outputs(cell_id, result.outputs, result.execution_count)
        execution = Execution(CellRef(final_index if final_index is not None else i, cell_id, "code"), result)
        if final_index is None:
            execution.saved = False
            execution.notes.append(
                "the cell was deleted while it ran, so its outputs were not saved; they are shown here only"
            )
        elif final_index != i:
            execution.notes.append(f"the cell moved from index {i} to {final_index} while it ran")
        return execution

    async def _write_outputs(self, cell_id: str, outputs: list[NotebookNode], count: int | None) -> int | None:
        """Save outputs into the cell with `cell_id`; returns its index, or None if it is gone."""

        def apply(nb: NotebookNode) -> int:
            i = _find_id(nb, cell_id)
            nb.cells[i]["outputs"] = outputs
            nb.cells[i]["execution_count"] = count
            return i

        try:
            index: int = await self._edit(apply)
        except CellNotFoundError:
            return None
        return index

    async def interrupt(self) -> None:
        if self.kernel is not None:
            await self.kernel.interrupt()

    async def restart_kernel(self) -> None:
        if self.kernel is not None:
            await self.kernel.restart()
