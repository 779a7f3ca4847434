"""Undo: the changes nbmcp made to a notebook, and taking them back (issue 15).

Every nbmcp process on the notebook (MCP server, CLI, Python API) records into the same journal
(`nbmcp.notebook.journal`), under the notebook's lock, so `History` sees and undoes their changes too.
"""

from __future__ import annotations

import logging
from pathlib import Path

import anyio
from nbformat import NotebookNode

from ..errors import UsageError
from ..notebook.journal import BARRIER, MAX_JOURNAL_ENTRIES, Journal, invert
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
        """
        journal = self.require_journal()
        if limit is not None and limit < 1:
            raise UsageError(f"limit must be at least 1, not {limit}")
        entries = await anyio.to_thread.run_sync(journal.entries)
        changes = [change_of(k, e) for k, e in enumerate(reversed(entries), 1)]
        return changes if limit is None else changes[:limit]

    async def undo(self, steps: int = 1) -> UndoResult:
        """Take back the last `steps` changes nbmcp made, newest first, in one write.

        Refuses with UndoConflictError, writing nothing, when a cell it would restore was changed
        since by someone else (or by an nbmcp change not in the journal). Outputs written by
        executions are kept: undoing a source change restores the source, not the outputs.
        """
        journal = self.require_journal()
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
            taken[:] = [change_of(k, e) for k, e in enumerate(newest_first, 1)]
            return len(nb.cells)

        def forget() -> None:
            try:
                journal.drop_last(len(taken))
            except OSError as exc:
                # The undo is saved. The entries left behind no longer match their cells, so a later
                # undo refuses them instead of applying them twice.
                logger.warning("could not update the undo journal %s: %s", journal.path, exc)

        total: int = await self.document.edit(apply, on_saved=forget)
        remaining = len(await anyio.to_thread.run_sync(journal.entries))
        return UndoResult(taken, remaining, total)

    async def clear_history(self) -> int:
        """Forget every recorded change to this notebook (undo can then take back nothing); returns how many."""
        journal = self.require_journal()
        store = self.document.store
        assert isinstance(store, LocalStore)

        def clear() -> int:
            with store.locked():
                return journal.clear()

        return await anyio.to_thread.run_sync(clear)
