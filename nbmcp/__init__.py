"""nbmcp: an MCP server that lets an AI assistant read, edit and run a Jupyter notebook on disk."""

__version__ = "0.1.0"

from .contents import ContentsStore
from .errors import (
    CellExecutionError,
    CellIndexError,
    CellNotFoundError,
    DeadKernelError,
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
