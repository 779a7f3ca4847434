"""What a session is doing now, for observers such as the live view (issue 22): read, never steered.

The session updates an `Activity` as it edits and runs cells; the tool wrapper names the tool a call
runs (`current_tool`). The view reads it a few times a second to show the running cell, its elapsed
time and its outputs so far, and to mark the cell the assistant changed or ran last with the tool's name.
"""

from __future__ import annotations

import contextvars
import time
from dataclasses import dataclass

from ..kernels.outputs import OutputCollector

__all__ = ["Activity", "RunningCell", "current_tool"]

#: The MCP tool whose call is being served (set by the tool wrapper; None outside a tool call).
current_tool: contextvars.ContextVar[str | None] = contextvars.ContextVar("current_tool", default=None)


@dataclass
class RunningCell:
    """A cell the kernel is running now."""

    cell_id: str
    started: float
    """time.monotonic() at the start."""
    collector: OutputCollector
    """The execution's outputs so far (`.outputs`), and a `.version` that grows with each change."""
    tool: str | None

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started


@dataclass
class Activity:
    """The running cell, and the last change a tool made (its name and when)."""

    running: RunningCell | None = None
    last_tool: str | None = None
    """The tool that last changed the notebook or ran a cell (None: none yet, or a change from the API)."""
    last_cell_id: str | None = None
    """The cell it ran, when known (edits are matched to cells by the view, which sees what changed)."""
    last_change: float = 0.0
    """time.monotonic() of that change."""
    version: int = 0

    def changed(self, cell_id: str | None = None) -> None:
        """The session changed the notebook (or ran `cell_id`) on behalf of the current tool."""
        self.last_tool = current_tool.get()
        self.last_cell_id = cell_id
        self.last_change = time.monotonic()
        self.version += 1

    def cell_started(self, cell_id: str, collector: OutputCollector) -> None:
        self.running = RunningCell(cell_id, time.monotonic(), collector, current_tool.get())
        self.changed(cell_id)

    def cell_finished(self, cell_id: str) -> None:
        if self.running is not None and self.running.cell_id == cell_id:
            self.running = None
            self.version += 1
