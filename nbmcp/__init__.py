"""nbmcp: an MCP server that lets an AI assistant read, edit and run a Jupyter notebook on disk."""

__version__ = "0.1.0"

from .errors import (
    CellExecutionError,
    CellIndexError,
    CellNotFoundError,
    DeadKernelError,
    KernelError,
    KernelStartError,
    LockTimeoutError,
    NbmcpError,
    NotebookError,
    NotebookFormatError,
    NotebookWriteError,
    SourceMatchError,
    ToolDisabledError,
    UsageError,
)
from .kernel import ExecutionResult, KernelState
from .notebook import Notebook
from .session import CellRef, CellView, Execution, NotebookSession, RunAll, Variable
from .store import LocalStore

__all__ = [
    "CellExecutionError",
    "CellIndexError",
    "CellNotFoundError",
    "CellRef",
    "CellView",
    "DeadKernelError",
    "Execution",
    "ExecutionResult",
    "KernelError",
    "KernelStartError",
    "KernelState",
    "LocalStore",
    "LockTimeoutError",
    "NbmcpError",
    "Notebook",
    "NotebookError",
    "NotebookFormatError",
    "NotebookSession",
    "NotebookWriteError",
    "RunAll",
    "SourceMatchError",
    "ToolDisabledError",
    "UsageError",
    "Variable",
    "__version__",
]
