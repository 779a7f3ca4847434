"""Undo: the changes nbmcp made to a notebook, and taking them back (issue 15).

Every nbmcp process on the notebook (MCP server, CLI, Python API) records into the same journal
(`nbmcp.notebook.journal`), under the notebook's lock, so `History` sees and undoes their changes too.
"""

from __future__ import annotations

import logging
from pathlib import Path

import anyio
from nbformat import NotebookNode

from ..errors import UndoConflictError, UsageError
from ..notebook.journal import BARRIER, MAX_JOURNAL_ENTRIES, Entry, Journal, conflicts, invert
from ..notebook.store import LocalStore
from .document import Document
from .results import Change, UndoResult, change_of

__all__ = ["History"]

logger = logging.getLogger(__name__)


class History:
    """The undo journal of one notebook file: what changed, and undo."""

    def __init__(self, document: Document, path: Path) -> None:
        self.document = document
        self.path = path

    def require_journal(self) -> Journal:
        """The journal, or a UsageError for a notebook on a Jupyter server (it has none)."""
        if self.document.journal is None:
            raise UsageError(
                f"undo and history work on local notebook files only; {self.document.store.path} is on a Jupyter server"
            )
        return self.document.journal

    async def history(self, limit: int | None = None) -> list[Change]:
        """The changes nbmcp made to this notebook that undo can take back, newest first (step 1).

        Every nbmcp process on the notebook (MCP server, CLI, Python API) records into the same journal.
        A change whose cells were deleted or changed since (in an editor, by `git checkout`) has `stale`
        set to why: undo cannot take it back, and `forget_changes` drops it without the others.
        """
        journal = self.require_journal()
        if limit is not None and limit < 1:
            raise UsageError(f"limit must be at least 1, not {limit}")
        entries = await anyio.to_thread.run_sync(journal.entries)
        stale: dict[str, UndoConflictError] = {}
        if entries:
            nb = await self.document.read()
            stale = await anyio.to_thread.run_sync(conflicts, nb, entries)
        changes = [
            change_of(k, e, f"{stale[e.id].cell} {stale[e.id].reason}" if e.id in stale else None)
            for k, e in enumerate(reversed(entries), 1)
        ]
        return changes if limit is None else changes[:limit]

    async def undo(self, steps: int = 1, change_id: str | None = None) -> UndoResult:
        """Take back the last `steps` changes nbmcp made, newest first, in one write; or the one `change_id` names.

        With `change_id`, only that change is taken back (like `git revert`), whatever came after it,
        as long as the cells it touched are still as it left them. Refuses with UndoConflictError,
        writing nothing, when a cell it would restore was changed since by someone else (or by an
        nbmcp change not in the journal). Outputs written by executions are kept: undoing a source
        change restores the source, not the outputs.
        """
        journal = self.require_journal()
        if steps < 1:
            raise UsageError(f"steps must be at least 1, not {steps}")
        if change_id is not None and steps != 1:
            raise UsageError("give steps or change_id, not both")
        taken: list[Change] = []

        def apply(nb: NotebookNode) -> int:
            # Read under the notebook's lock: another nbmcp process may have recorded a change since.
            entries = journal.entries()
            if not entries:
                raise UsageError(f"nothing to undo: nbmcp has no recorded change to {self.path}")
            chosen = [self._find(entries, change_id)] if change_id is not None else self._newest(entries, steps)
            for step, entry in chosen:
                if entry.kind == BARRIER:
                    raise UsageError(
                        f"change {step} was {entry.summary}; "
                        + (f"steps can be at most {step - 1}" if step > 1 else "nothing can be undone")
                    )
                invert(nb, entry)
            taken[:] = [change_of(step, entry) for step, entry in chosen]
            return len(nb.cells)

        def forget() -> None:
            try:
                journal.drop({change.id for change in taken})
            except OSError as exc:
                # The undo is saved. The entries left behind no longer match their cells, so a later
                # undo refuses them instead of applying them twice.
                logger.warning("could not update the undo journal %s: %s", journal.path, exc)

        total: int = await self.document.edit(apply, on_saved=forget)
        remaining = len(await anyio.to_thread.run_sync(journal.entries))
        return UndoResult(taken, remaining, total)

    def _newest(self, entries: list[Entry], steps: int) -> list[tuple[int, Entry]]:
        if steps > len(entries):
            valid = f"1 to {len(entries)}" if len(entries) > 1 else "only 1"
            raise UsageError(
                f"only {len(entries)} change(s) to {self.path.name} are recorded (the journal keeps up to "
                f"{MAX_JOURNAL_ENTRIES}); steps can be {valid}"
            )
        return list(enumerate(entries[::-1][:steps], 1))

    def _find(self, entries: list[Entry], change_id: str) -> tuple[int, Entry]:
        """The step and entry of the change `change_id` names (its id, or a unique start of it)."""
        wanted = change_id.strip().lower()
        found = [(k, e) for k, e in enumerate(reversed(entries), 1) if wanted and e.id.startswith(wanted)]
        if len(found) == 1:
            return found[0]
        newest = ", ".join(e.id for e in entries[::-1][:5])
        what = "several recorded changes have ids starting with" if found else "no recorded change has the id"
        raise UsageError(
            f"{what} {change_id!r} in {self.path.name}; the history lists the ids (newest first: {newest})"
        )

    async def forget_changes(self, change_ids: list[str]) -> list[Change]:
        """Drop the named changes from the journal without touching the notebook or the other changes.

        For a change that no longer applies (its cell was deleted in an editor, or the notebook was
        checked out again): undo stops at it, and dropping it lets undo reach the older ones.
        Returns the dropped changes.
        """
        journal = self.require_journal()
        if not change_ids:
            raise UsageError("name at least one change id to forget")
        store = self.document.store
        assert isinstance(store, LocalStore)

        def drop() -> list[Change]:
            with store.locked():
                entries = journal.entries()
                if not entries:
                    raise UsageError(f"nbmcp has no recorded change to {self.path}")
                chosen = [self._find(entries, change_id) for change_id in change_ids]
                journal.drop({entry.id for _, entry in chosen})
                return [change_of(step, entry) for step, entry in chosen]

        return await anyio.to_thread.run_sync(drop)

    async def clear_history(self) -> int:
        """Forget every recorded change to this notebook (undo can then take back nothing); returns how many."""
        journal = self.require_journal()
        store = self.document.store
        assert isinstance(store, LocalStore)

        def clear() -> int:
            with store.locked():
                return journal.clear()

        return await anyio.to_thread.run_sync(clear)
