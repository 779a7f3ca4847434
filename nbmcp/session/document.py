"""The notebook's cells: reading, editing and saving outputs, each edit under the notebook's lock.

`Document` is the session's part that touches the store: every read stats the file first, every
edit is the store's lock -> reload if changed -> apply -> atomic write, and every change a person may
want back is recorded in the undo journal under the same lock (issue 15).
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable
from typing import Any

import anyio
from nbformat import NotebookNode

from ..errors import CellIndexError, CellNotFoundError, SourceMatchError, UsageError
from ..notebook.encoder import mark_changed
from ..notebook.journal import (
    Entry,
    Journal,
    clear_outputs_entry,
    delete_entry,
    insert_entry,
    move_entry,
    source_entry,
)
from ..notebook.store import LocalStore, NotebookStore
from .activity import Activity
from .cells import cell_ref, cell_source, cell_view, check_index, ensure_ids, find_id, locate, new_cell, source_diff
from .results import CellRef, CellView, cell_name

__all__ = ["Document", "EditAbandoned"]

logger = logging.getLogger(__name__)


class EditAbandoned(Exception):
    """Raised inside a worker thread to drop an edit whose call was cancelled; nobody sees it."""


class Document:
    """A notebook in its store, with the undo journal of a local file (None for a Contents-API notebook)."""

    def __init__(self, store: NotebookStore) -> None:
        self.store = store
        # The undo journal needs the cross-process lock of a local file (issue 15).
        self.journal = Journal(store.path) if isinstance(store, LocalStore) else None
        #: The notebook object whose cells all have ids (checked once per notebook read from the file).
        self._ids_given: weakref.ref[NotebookNode] | None = None
        #: What the session is doing, for observers such as the live view (issue 22).
        self.activity = Activity()

    async def read(self) -> NotebookNode:
        """The notebook as it is on disk now (reloaded only when the file changed)."""
        nb = self.store.read_if_unchanged()  # a stat on the event loop; a thread only when needed
        return nb if nb is not None else await anyio.to_thread.run_sync(self.store.read)

    async def edit(self, apply: Callable[[NotebookNode], Any], *, on_saved: Callable[[], None] | None = None) -> Any:
        """Apply `apply` to the notebook under its lock and save it; returns what `apply` returned.

        The first change of a notebook without cell ids gives it ids. A call cancelled while it waits
        for the lock returns at once and its edit is never applied.
        """
        abandoned = threading.Event()

        def with_ids(nb: NotebookNode) -> Any:
            if abandoned.is_set():
                # The call was cancelled (its client left) while the edit waited for the lock.
                raise EditAbandoned("the call that asked for this edit was cancelled")
            # Every answer names cells by index and id, so the first change of a 4.4 notebook gives
            # it ids (as JupyterLab does on save); reading never changes the file. Looked at once per
            # notebook read from the file: every cell nbmcp adds has an id (a scan costs ~3 ms at 10,000 cells).
            if self._ids_given is None or self._ids_given() is not nb:
                ensure_ids(nb)
                self._ids_given = weakref.ref(nb)
            return apply(nb)

        store = self.store
        if isinstance(store, LocalStore):
            # A small notebook whose lock is free is saved right here: the hop to a worker thread and
            # back cost more than such an edit (issue 23). Anything to wait for goes to the thread.
            done, result = store.edit_now(with_ids, on_saved=on_saved)
            if done:
                self.activity.changed()
                return result
        try:
            # abandon_on_cancel: a cancelled call returns at once instead of waiting for the lock,
            # and the flag keeps its edit from being applied afterwards.
            if on_saved is not None and isinstance(store, LocalStore):
                result = await anyio.to_thread.run_sync(
                    lambda: store.edit(with_ids, on_saved=on_saved), abandon_on_cancel=True
                )
            else:
                result = await anyio.to_thread.run_sync(store.edit, with_ids, abandon_on_cancel=True)
        except anyio.get_cancelled_exc_class():
            abandoned.set()
            raise
        self.activity.changed()
        return result

    async def journaled(self, apply: Callable[[NotebookNode], tuple[Any, Entry | None]]) -> Any:
        """Run an edit whose `apply` also returns its journal entry, recorded under the same lock."""
        journal = self.journal
        if journal is None:
            return await self.edit(lambda nb: apply(nb)[0])
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

        return await self.edit(run, on_saved=record)

    async def read_cell(self, index: int | None = None, *, cell_id: str | None = None) -> CellView:
        """One cell, by index (negative counts from the end) or by id."""
        nb = await self.read()
        i = locate(nb, index, cell_id)
        return cell_view(i, nb.cells[i])

    async def read_cells(self) -> list[CellView]:
        """Every cell."""
        return (await self.read_page())[0]

    async def read_page(self, start: int = 0, limit: int | None = None) -> tuple[list[CellView], int]:
        """At most `limit` cells (all when None) from index `start`, and the notebook's cell count."""
        nb = await self.read()
        n = len(nb.cells)
        if start < 0 or (start >= n and start != 0):
            raise UsageError(f"start_index {start} is out of range; the notebook has {n} cells (valid: 0 to {n - 1})")
        if limit is not None and limit < 1:
            raise UsageError(f"limit must be at least 1, not {limit}")
        stop = n if limit is None else min(start + limit, n)
        return [cell_view(i, nb.cells[i]) for i in range(start, stop)], n

    async def read_output(
        self, index: int | None = None, output_index: int = 0, *, cell_id: str | None = None
    ) -> tuple[CellRef, dict[str, Any]]:
        """One output of a cell, whole, as stored in the file."""
        nb = await self.read()
        i = locate(nb, index, cell_id)
        cell = nb.cells[i]
        ref = cell_ref(i, cell)
        outputs = cell.get("outputs", [])
        if not outputs:
            raise UsageError(f"{cell_name(ref)} has no outputs")
        if not 0 <= output_index < len(outputs):
            raise UsageError(
                f"output_index {output_index} is out of range; {cell_name(ref)} has {len(outputs)} "
                f"output(s) (valid: 0 to {len(outputs) - 1})"
            )
        return ref, dict(outputs[output_index])

    # -- editing ----------------------------------------------------------------------------------

    async def insert_cell(
        self, index: int | None, cell_type: str, source: str, *, cell_id: str | None = None
    ) -> CellRef:
        """Insert a new cell before `index` (-1 or the cell count appends), or before the cell `cell_id`."""
        new_cell(cell_type, source)  # a bad cell_type fails before the file is locked

        def apply(nb: NotebookNode) -> tuple[CellRef, Entry]:
            # The store may apply an edit twice (the file changed meanwhile): build the cell here.
            cell = new_cell(cell_type, source)
            n = len(nb.cells)
            if (index is None) == (cell_id is None):
                raise UsageError("give either cell_index or cell_id (exactly one of the two)")
            if cell_id is not None:
                at = find_id(nb, cell_id)
            elif index == -1:
                at = n
            elif index is not None and 0 <= index <= n:
                at = index
            else:
                raise CellIndexError(index or 0, n, allow_end=True)
            nb.cells.insert(at, cell)
            mark_changed()  # a new cell, and none changed in place
            return cell_ref(at, cell), insert_entry(nb, at)

        ref: CellRef = await self.journaled(apply)
        return ref

    async def overwrite_source(
        self, index: int | None, source: str, *, cell_id: str | None = None
    ) -> tuple[CellRef, str]:
        """Replace a cell's source; returns the cell and a unified diff of the change."""

        def apply(nb: NotebookNode) -> tuple[tuple[CellRef, str], Entry | None]:
            i = locate(nb, index, cell_id)
            cell = nb.cells[i]
            old = cell_source(cell)
            cell["source"] = source
            mark_changed(cell)
            return (cell_ref(i, cell), source_diff(old, source, i)), source_entry("overwrite", nb, i, old)

        result: tuple[CellRef, str] = await self.journaled(apply)
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
            i = locate(nb, index, cell_id)
            cell = nb.cells[i]
            old = cell_source(cell)
            count = old.count(old_string)
            if count == 0 or (count > 1 and not replace_all):
                raise SourceMatchError(cell_name(cell_ref(i, cell)), old_string, count)
            new = old.replace(old_string, new_string)
            cell["source"] = new
            mark_changed(cell)
            return (cell_ref(i, cell), source_diff(old, new, i), count), source_entry("edit", nb, i, old)

        result: tuple[CellRef, str, int] = await self.journaled(apply)
        return result

    async def move_cell(
        self, index: int | None, target_index: int, *, cell_id: str | None = None
    ) -> tuple[CellRef, CellRef]:
        """Move a cell so that it ends up at `target_index` (-1 = last); returns where it was and is."""

        def apply(nb: NotebookNode) -> tuple[tuple[CellRef, CellRef], Entry | None]:
            i = locate(nb, index, cell_id, what="source_index", id_name="source_cell_id")
            n = len(nb.cells)
            try:
                target = check_index(target_index, n)
            except CellIndexError:
                raise UsageError(
                    f"target_index {target_index} is out of range; the notebook has {n} cells "
                    f"(valid: 0 to {n - 1}, or -1 for the end)"
                ) from None
            prev_before = nb.cells[i - 1].get("id") if i > 0 else None
            mark_changed()  # no cell changes in place
            cell = nb.cells.pop(i)
            nb.cells.insert(target, cell)
            return (cell_ref(i, cell), cell_ref(target, cell)), move_entry(nb, i, target, prev_before)

        result: tuple[CellRef, CellRef] = await self.journaled(apply)
        return result

    async def delete_cell(self, index: int | None, *, cell_id: str | None = None) -> CellView:
        """Delete a cell; returns what it held."""

        def apply(nb: NotebookNode) -> tuple[CellView, Entry]:
            i = locate(nb, index, cell_id)
            entry = delete_entry(nb, i)
            mark_changed()  # no cell changes in place
            return cell_view(i, nb.cells.pop(i)), entry

        view: CellView = await self.journaled(apply)
        return view

    async def clear_outputs(self, index: int | None, *, cell_id: str | None = None) -> tuple[CellRef, int]:
        """Clear one code cell's outputs and execution count; returns the cell and how many outputs went."""

        def apply(nb: NotebookNode) -> tuple[tuple[CellRef, int], Entry | None]:
            i = locate(nb, index, cell_id)
            cell = nb.cells[i]
            if cell.get("cell_type") != "code":
                raise UsageError(
                    f"{cell_name(cell_ref(i, cell))} is a {cell.get('cell_type')} cell; only code cells have outputs"
                )
            removed = len(cell.get("outputs", []))
            entry = clear_outputs_entry(nb, [i])
            mark_changed(cell)
            cell["outputs"] = []
            cell["execution_count"] = None
            return (cell_ref(i, cell), removed), entry

        result: tuple[CellRef, int] = await self.journaled(apply)
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

        cleared: int = await self.journaled(apply)
        return cleared

    async def write_outputs(
        self,
        cell_id: str,
        outputs: list[NotebookNode],
        count: int | None,
        *,
        hint: int | None = None,
        also: Callable[[NotebookNode], bool] | None = None,
    ) -> int | None:
        """Save outputs into the cell with `cell_id` (last seen at `hint`); its index, or None if it is gone.

        `also` makes more changes in the same write (other cells' display updates, the notebook's
        metadata) and says whether it changed anything: those are saved even if the cell is gone.
        """

        def apply(nb: NotebookNode) -> int | None:
            changed = also(nb) if also is not None else False
            try:
                i = find_id(nb, cell_id, hint)
            except CellNotFoundError:
                if changed:
                    return None
                raise
            mark_changed(nb.cells[i])
            nb.cells[i]["outputs"] = outputs
            nb.cells[i]["execution_count"] = count
            return i

        try:
            index: int | None = await self.edit(apply)
        except CellNotFoundError:
            return None
        return index

    async def write_many_outputs(
        self,
        outputs: list[tuple[str, list[NotebookNode], int | None]],
        *,
        also: Callable[[NotebookNode], bool] | None = None,
    ) -> None:
        """Save the outputs of several cells (by id, `(cell_id, outputs, count)`) in one write.

        A headless run's cells, saved together: a cell deleted meanwhile is skipped.
        """

        def apply(nb: NotebookNode) -> None:
            where = {cell.get("id"): cell for cell in nb.cells}
            for cell_id, cell_outputs, count in outputs:
                cell = where.get(cell_id)
                if cell is not None:
                    mark_changed(cell)
                    cell["outputs"] = cell_outputs
                    cell["execution_count"] = count
            if also is not None:
                also(nb)  # after the outputs: display updates may change the ones just written

        await self.edit(apply)

    async def index_of(self, cell_id: str) -> int | None:
        """Where the cell with `cell_id` is now, or None if it is gone."""
        try:
            return find_id(await self.read(), cell_id)
        except CellNotFoundError:
            return None
