"""The exceptions nbmcp raises.

Every error a user can act on is one of these; the tool layer turns them into MCP error results in
one place (`nbmcp.tools`). Each subclasses the builtin it resembles, so plain `except` clauses work::

    NbmcpError(Exception)
    ├── NotebookError
    │   ├── NotebookFormatError(ValueError)   the file is not a readable notebook
    │   ├── CellIndexError(IndexError)        index out of range; carries the valid range
    │   ├── CellNotFoundError(LookupError)    a cell id that is not (or no longer) in the notebook
    │   ├── SourceMatchError(ValueError)      edit_cell_source's old_string is absent or ambiguous
    │   ├── LockTimeoutError(TimeoutError)    another process held the notebook's lock too long
    │   └── NotebookWriteError(OSError)       the notebook could not be written
    ├── KernelError(RuntimeError)
    │   ├── KernelStartError                  the kernel could not be started
    │   └── DeadKernelError                   the kernel died while running code
    ├── CellExecutionError(RuntimeError)      a cell raised, timed out or killed its kernel (raised on
    │                                         request only: `Execution.raise_for_status()`, the sync API)
    └── UsageError(ValueError)                bad arguments or configuration
        ├── PathError                         a notebook path outside the served folder
        └── ToolDisabledError                 a tool this server does not expose (--tools, --read-only)
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "CellExecutionError",
    "CellIndexError",
    "CellNotFoundError",
    "DeadKernelError",
    "KernelError",
    "KernelStartError",
    "LockTimeoutError",
    "NbmcpError",
    "NotebookError",
    "NotebookFormatError",
    "NotebookWriteError",
    "PathError",
    "SourceMatchError",
    "ToolDisabledError",
    "UsageError",
]


class NbmcpError(Exception):
    """Base class of every nbmcp error."""


class NotebookError(NbmcpError):
    """A problem with the notebook file or its cells."""


class NotebookFormatError(NotebookError, ValueError):
    """The file exists but is not a notebook nbformat can read; it is left untouched."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(
            f"{self.path} is not a valid Jupyter notebook ({reason}). "
            "The file was left untouched; fix it or point nbmcp at another file."
        )


class CellIndexError(NotebookError, IndexError):
    """A cell index outside the notebook; the message names the valid range."""

    def __init__(self, index: int, n_cells: int, *, allow_end: bool = False) -> None:
        self.index = index
        self.n_cells = n_cells
        top = n_cells if allow_end else n_cells - 1
        if top < 0:
            valid = "the notebook has no cells"
        elif allow_end:
            valid = f"valid: 0 to {top} (or -1 to append)" if top > 0 else "valid: 0 (or -1 to append)"
        else:
            valid = f"valid: 0 to {top}, or negative indices counting from the end"
        super().__init__(f"cell index {index} is out of range; the notebook has {n_cells} cells ({valid})")


class CellNotFoundError(NotebookError, LookupError):
    """A cell id that is not in the notebook (any more)."""

    def __init__(self, cell_id: str) -> None:
        self.cell_id = cell_id
        super().__init__(f"cell {cell_id!r} not found; the notebook may have changed, read it again")


class SourceMatchError(NotebookError, ValueError):
    """The text to replace in a cell is not there, or is there more than once."""

    def __init__(self, cell: str, old_string: str, count: int) -> None:
        self.cell = cell
        self.count = count
        shown = old_string if len(old_string) <= 80 else old_string[:77] + "..."
        if count == 0:
            message = (
                f"old_string {shown!r} does not occur in {cell}; it must match the source exactly "
                "(whitespace and indentation included): read the cell again and copy the text"
            )
        else:
            message = (
                f"old_string {shown!r} occurs {count} times in {cell}; include more of the surrounding "
                "text so that it occurs once, or pass replace_all=true to replace every occurrence"
            )
        super().__init__(message)


class LockTimeoutError(NotebookError, TimeoutError):
    """Another process kept the notebook's lock for longer than nbmcp waits."""

    def __init__(self, path: Path | str, waited: float) -> None:
        self.path = str(path)
        self.waited = waited
        super().__init__(
            f"could not lock {self.path} within {waited:g} s: another nbmcp process is writing it; try again"
        )


class NotebookWriteError(NotebookError, OSError):
    """The notebook could not be saved; the file on disk is unchanged."""


class KernelError(NbmcpError, RuntimeError):
    """A problem with the kernel that runs the notebook's code."""


class KernelStartError(KernelError):
    """The kernel could not be started."""


class DeadKernelError(KernelError):
    """The kernel died; it is restarted on the next execution."""


class CellExecutionError(NbmcpError, RuntimeError):
    """A cell did not run to completion: it raised, timed out, or its kernel died.

    Executions return their status rather than raising; this is raised when a caller asks for it
    (`Execution.raise_for_status()`, `Notebook.add_code(..., run=True)`), as nbclient does.
    """

    def __init__(self, index: int, cell_id: str | None, status: str, traceback: str) -> None:
        self.index = index
        self.cell_id = cell_id
        self.status = status
        self.traceback = traceback
        where = f"cell {index} (id {cell_id})" if cell_id else f"cell {index}"
        what = {"error": "raised an exception", "timeout": "timed out", "dead": "killed its kernel"}.get(status, status)
        super().__init__(f"{where} {what}" + (f":\n{traceback}" if traceback else ""))


class UsageError(NbmcpError, ValueError):
    """Arguments or configuration that cannot work; the message says what is valid."""


class PathError(UsageError):
    """A client-given notebook path that may not be served; nothing was touched."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"refused notebook path {path!r}: {reason}")


class ToolDisabledError(UsageError):
    """A tool that exists but that this server was started without (`--tools`, `--read-only`)."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        super().__init__(f"tool {name!r} is not available on this server: {reason}")
