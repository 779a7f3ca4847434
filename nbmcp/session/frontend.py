"""The front end's changes saved into the notebook: other cells' display updates and metadata (issue 26).

`nbmcp.kernels.frontend.Frontend` follows display ids and widgets across a notebook's executions;
`SavedFrontend` turns what it has for the notebook beyond the running cell into a change made in
the same write as that cell's outputs (so a run writes no more often than before), and at the end of
a run saves whatever is left.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from typing import Any

from nbformat import NotebookNode

from ..errors import CellNotFoundError
from ..kernels.base import Kernel
from ..kernels.frontend import Frontend
from ..notebook.encoder import mark_changed
from .cells import find_id
from .document import Document

__all__ = ["SavedFrontend", "apply_frontend"]


class SavedFrontend(Frontend):
    """A `Frontend` that remembers which widget state it saved, and saves its changes."""

    def __init__(self) -> None:
        super().__init__()
        self._widgets_saved = 0

    def changes(self, kernel: Kernel | None) -> Callable[[NotebookNode], bool] | None:
        """What to change beyond the running cell, for the next write; None when there is nothing.

        Other cells' display updates, the widget state (when it changed) and the kernel's
        language_info, taken now, on the event loop: the kernel's messages change them meanwhile,
        and the write applies them in a worker thread, perhaps more than once.
        """
        pending = self.take_pending()
        widgets = None
        if self.widgets_version != self._widgets_saved:
            self._widgets_saved = self.widgets_version
            widgets = copy.deepcopy(self.widgets_metadata())
        language_info = kernel.language_info if kernel is not None else None
        if not pending and widgets is None and language_info is None:
            return None
        return functools.partial(apply_frontend, pending=pending, widgets=widgets, language_info=language_info)

    async def save(self, document: Document, kernel: Kernel | None) -> None:
        """Save what `changes` has if it changes the notebook (at the end of a run: language_info when no
        cell ran, an update sent after the last cell's outputs were saved)."""
        language_info = kernel.language_info if kernel is not None else None
        if (
            self.pending
            or self.widgets_version != self._widgets_saved
            or (language_info is not None and (await document.read()).metadata.get("language_info") != language_info)
        ):
            also = self.changes(kernel)
            if also is not None:
                await document.edit(also)


def apply_frontend(
    nb: NotebookNode,
    *,
    pending: dict[str, dict[int, tuple[Any, Any]]],
    widgets: dict[str, Any] | None,
    language_info: dict[str, Any] | None,
) -> bool:
    """Apply a front end's changes (see `SavedFrontend.changes`) to `nb`; True if any changed it."""
    changed = False
    for cell_id, updates in pending.items():
        try:
            cell = nb.cells[find_id(nb, cell_id)]
        except CellNotFoundError:
            continue  # deleted since it ran
        outputs = cell.get("outputs", [])
        mark_changed(cell)
        for pos, (data, metadata) in updates.items():
            # Positions are the cell's as it ran; a cell cleared since has fewer outputs.
            if pos < len(outputs) and outputs[pos].get("output_type") in ("display_data", "execute_result"):
                outputs[pos]["data"], outputs[pos]["metadata"] = data, metadata
                changed = True
    # nbclient writes the widget state only when a widget was seen; it replaces the old one whole.
    if widgets is not None and nb.metadata.get("widgets") != widgets:
        nb.metadata["widgets"] = widgets
        changed = True
    if language_info is not None and nb.metadata.get("language_info") != language_info:
        nb.metadata["language_info"] = copy.deepcopy(language_info)
        changed = True
    return changed
