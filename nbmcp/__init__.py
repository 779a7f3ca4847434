"""nbmcp: an MCP server that lets an AI assistant read, edit and run a Jupyter notebook on disk."""

__version__ = "0.1.0"

from .errors import (
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
from .session import CellRef, CellView, Execution, NotebookSession, Variable
from .store import LocalStore

__all__ = [
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
    "NotebookError",
    "NotebookFormatError",
    "NotebookSession",
    "NotebookWriteError",
    "SourceMatchError",
    "ToolDisabledError",
    "UsageError",
    "Variable",
    "__version__",
]
