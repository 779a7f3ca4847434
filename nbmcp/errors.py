"""The exceptions nbmcp raises.

Every error a user can act on is one of these; the tool layer turns them into MCP error results in
one place (`nbmcp.server.tools.registry`). Each subclasses the builtin it resembles, so plain `except` clauses work::

    NbmcpError(Exception)
    ├── NotebookError
    │   ├── NotebookFormatError(ValueError)   the file is not a readable notebook
    │   ├── CellIndexError(IndexError)        index out of range; carries the valid range
    │   ├── CellNotFoundError(LookupError)    a cell id that is not (or no longer) in the notebook
    │   ├── SourceMatchError(ValueError)      edit_cell_source's old_string is absent or ambiguous
    │   ├── LockTimeoutError(TimeoutError)    another process held the notebook's lock too long
    │   ├── NotebookWriteError(OSError)       the notebook could not be written
    │   ├── UndoConflictError(RuntimeError)   undo would overwrite a later change by someone else
    │   └── NotebookNotFoundError(FileNotFoundError)  no such notebook (or folder) on a Jupyter server
    ├── KernelError(RuntimeError)
    │   ├── KernelStartError                  the kernel could not be started
    │   │   └── NoSuchKernelError             the notebook's kernelspec is not installed here
    │   ├── DeadKernelError                   the kernel died while running code
    │   ├── KernelBusyError                   another execution is running (one at a time per kernel)
    │   └── NoKernelsApiError                 the Jupyter server does not run kernels
    ├── CellExecutionError(RuntimeError)      a cell raised, timed out or killed its kernel (raised on
    │                                         request only: `Execution.raise_for_status()`, the sync API)
    ├── ServerError                           talking to a remote Jupyter server failed
    │   ├── ServerUnreachableError(ConnectionError)  nothing answers at the server's URL
    │   ├── ServerAuthError(PermissionError)  the server refused the token (401/403)
    │   ├── NotJupyterError(ValueError)       a redirect or a non-JSON answer: not a Jupyter server's API
    │   ├── ServerResponseError(RuntimeError) any other unexpected answer
    │   └── HubError(RuntimeError)            JupyterHub could not give a user's running server
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
    "HubError",
    "KernelBusyError",
    "KernelError",
    "KernelStartError",
    "LockTimeoutError",
    "NbmcpError",
    "NoKernelsApiError",
    "NoSuchKernelError",
    "NotJupyterError",
    "NotebookError",
    "NotebookFormatError",
    "NotebookNotFoundError",
    "NotebookWriteError",
    "PathError",
    "ServerAuthError",
    "ServerError",
    "ServerResponseError",
    "ServerUnreachableError",
    "SourceMatchError",
    "ToolDisabledError",
    "UndoConflictError",
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


class UndoConflictError(NotebookError, RuntimeError):
    """Undo would overwrite a change someone else made since nbmcp's change; nothing was written."""

    def __init__(self, cell: str, reason: str, change: str = "", change_id: str = "") -> None:
        self.cell = cell
        self.reason = reason
        self.change = change
        self.change_id = change_id
        what = f" change {change_id}" if change_id else ""
        what += f" ({change})" if change else ""
        super().__init__(
            f"cannot undo{what}: {cell} {reason}. Undoing would overwrite that later change, so nothing "
            "was written; read the cell and change it by hand if needed"
            + (
                f". If the change no longer matters, forget it (change {change_id}) and older changes can "
                "still be undone, each by its id"
                if change_id
                else ""
            )
        )


class NotebookNotFoundError(NotebookError, FileNotFoundError):
    """The notebook (or the folder meant to hold it) does not exist on the Jupyter server."""

    def __init__(self, location: str, detail: str = "") -> None:
        self.location = location
        super().__init__(
            f"{location} was not found on the Jupyter server{f' ({detail})' if detail else ''}. "
            "The path (DOCUMENT_ID or PATH) is relative to the folder the server was started in; "
            "check it in JupyterLab's file browser"
        )


class KernelError(NbmcpError, RuntimeError):
    """A problem with the kernel that runs the notebook's code."""


class KernelStartError(KernelError):
    """The kernel could not be started."""


class NoSuchKernelError(KernelStartError):
    """The kernel the notebook's metadata names (`kernelspec.name`) is not installed here.

    The message starts as jupyter_client's, papermill's and nbclient's ("No such kernel named ir"),
    so a CI log reads the same after a move, and names the kernels that are installed.
    """

    def __init__(self, name: str, installed: list[str]) -> None:
        self.name = name
        self.installed = installed
        super().__init__(
            f"No such kernel named {name}: the notebook's metadata (kernelspec) asks for it, and it is not "
            f"installed here (installed kernels: {', '.join(installed) or 'none'}); install it, or run the "
            "notebook with another kernel: --kernel NAME"
        )


class DeadKernelError(KernelError):
    """The kernel died; it is restarted on the next execution."""


class KernelBusyError(KernelError):
    """An execution was asked for while another one runs; nothing was run.

    One execution at a time per kernel (issue 15): queueing the second one behind a cell that may run
    for minutes would only hold the call until the client gives up. The message names what is
    running and how to wait for it or stop it.
    """

    def __init__(self, running: str, execution_id: str | None, elapsed: float) -> None:
        self.running = running
        self.execution_id = execution_id
        self.elapsed = elapsed
        how = (
            f"wait_for_execution(execution_id={execution_id!r}) waits for it and returns its outputs; "
            if execution_id
            else ""
        )
        ident = f" (execution_id {execution_id!r})" if execution_id else ""
        super().__init__(
            f"the kernel is busy: {running}{ident} has been running for {elapsed:.0f} s, so nothing was run. "
            f"{how}interrupt_kernel stops it; then call again."
        )


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


class NoKernelsApiError(KernelError):
    """The Jupyter server answers, but has no kernels API (a contents-only server)."""

    def __init__(self, url: str) -> None:
        self.url = url
        super().__init__(
            f"the Jupyter server at {url} has no kernels API (/api/kernels and /api/sessions answer 404), "
            "so it cannot run code; leave RUNTIME_URL unset to run code on a local kernel instead"
        )


class ServerError(NbmcpError):
    """Talking to a remote Jupyter server failed. Messages never contain the token."""


class ServerUnreachableError(ServerError, ConnectionError):
    """Nothing answers at the Jupyter server's URL."""

    def __init__(self, url: str, reason: str, *, option: str = "DOCUMENT_URL, RUNTIME_URL or --server-url") -> None:
        self.url = url
        super().__init__(
            f"cannot reach the Jupyter server at {url} ({reason}); is it running, and is the URL ({option}) right?"
        )


class ServerAuthError(ServerError, PermissionError):
    """The Jupyter server refused our token."""

    def __init__(self, url: str, status: int, *, option: str, what: str = "the token") -> None:
        self.url = url
        self.status = status
        # Never --token: that is nbmcp's own HTTP bearer token, not the Jupyter server's (issue 25).
        fix = "its token" if what == "the token" else "the right password"
        super().__init__(f"the Jupyter server at {url} refused {what} (HTTP {status}); give {fix} in {option}")


class NotJupyterError(ServerError, ValueError):
    """What answers at the URL is not a Jupyter server's API (a redirect, an HTML page); the message says what."""


class ServerResponseError(ServerError, RuntimeError):
    """The Jupyter server answered something nbmcp did not expect."""

    def __init__(self, what: str, status: int, message: str) -> None:
        self.status = status
        super().__init__(f"{what} failed: the Jupyter server answered HTTP {status}: {message}")


class HubError(ServerError, RuntimeError):
    """JupyterHub could not give a user's running server (no such user, a missing scope, a failed or slow start)."""


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
