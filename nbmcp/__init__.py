"""nbmcp: an MCP server that lets an AI assistant read, edit and run a Jupyter notebook on disk.

The public names below are imported on first use (PEP 562), so `import nbmcp.cli` does not pay for
nbformat, jupyter_client and httpx before the server can answer `initialize` (issue 14).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .batch import NotebookResult
    from .contents import ContentsStore
    from .errors import (
        CellExecutionError,
        CellIndexError,
        CellNotFoundError,
        DeadKernelError,
        KernelBusyError,
        KernelError,
        KernelStartError,
        LockTimeoutError,
        NbmcpError,
        NoKernelsApiError,
        NotebookError,
        NotebookFormatError,
        NotebookNotFoundError,
        NotebookWriteError,
        ServerAuthError,
        ServerError,
        ServerUnreachableError,
        SourceMatchError,
        ToolDisabledError,
        UndoConflictError,
        UsageError,
    )
    from .kernel import ExecutionResult, KernelState
    from .notebook import Notebook
    from .remote import JupyterServer
    from .remote_kernel import RemoteKernel
    from .session import CellRef, CellView, Change, Execution, NotebookSession, RunAll, UndoResult, Variable
    from .store import LocalStore

#: Where each public name lives.
_HOMES = {
    "NotebookResult": "batch",
    "ContentsStore": "contents",
    "ExecutionResult": "kernel",
    "KernelState": "kernel",
    "Notebook": "notebook",
    "JupyterServer": "remote",
    "RemoteKernel": "remote_kernel",
    "CellRef": "session",
    "CellView": "session",
    "Execution": "session",
    "NotebookSession": "session",
    "RunAll": "session",
    "Change": "session",
    "UndoResult": "session",
    "Variable": "session",
    "LocalStore": "store",
    **dict.fromkeys(
        [
            "CellExecutionError",
            "CellIndexError",
            "CellNotFoundError",
            "DeadKernelError",
            "KernelBusyError",
            "KernelError",
            "KernelStartError",
            "LockTimeoutError",
            "NbmcpError",
            "NoKernelsApiError",
            "NotebookError",
            "NotebookFormatError",
            "NotebookNotFoundError",
            "NotebookWriteError",
            "ServerAuthError",
            "ServerError",
            "ServerUnreachableError",
            "SourceMatchError",
            "ToolDisabledError",
            "UndoConflictError",
            "UsageError",
        ],
        "errors",
    ),
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'nbmcp' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{home}", __name__), name)
    globals()[name] = value  # once imported, a plain module attribute
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "CellExecutionError",
    "CellIndexError",
    "CellNotFoundError",
    "CellRef",
    "CellView",
    "Change",
    "ContentsStore",
    "DeadKernelError",
    "Execution",
    "ExecutionResult",
    "JupyterServer",
    "KernelBusyError",
    "KernelError",
    "KernelStartError",
    "KernelState",
    "LocalStore",
    "LockTimeoutError",
    "NbmcpError",
    "NoKernelsApiError",
    "Notebook",
    "NotebookError",
    "NotebookFormatError",
    "NotebookNotFoundError",
    "NotebookResult",
    "NotebookSession",
    "NotebookWriteError",
    "RemoteKernel",
    "RunAll",
    "ServerAuthError",
    "ServerError",
    "ServerUnreachableError",
    "SourceMatchError",
    "ToolDisabledError",
    "UndoConflictError",
    "UndoResult",
    "UsageError",
    "Variable",
    "__version__",
]
