"""nbmcp: an MCP server that lets an AI assistant read, edit and run a Jupyter notebook on disk.

The package is built in layers, one folder each:

- `nbmcp.notebook`: where the notebook lives (a local file, or a Jupyter server's Contents API);
- `nbmcp.kernels`: where its code runs (a local kernel, or a Jupyter server's);
- `nbmcp.jupyter`: the client of a remote Jupyter server, shared by the two above;
- `nbmcp.session`: `NotebookSession`, the one object that combines a notebook and its kernel;
- `nbmcp.server`: the MCP face (tools, what the model sees, stdio and streamable HTTP);
- `nbmcp.ci`: headless runs (parameters, many notebooks, JUnit) and the blocking `Notebook` API;
- `nbmcp.cli`: the `nbmcp` command and its subcommands.

The errors are imported with the package (they are plain classes). The other public names are
imported on first use (PEP 562), so `import nbmcp.cli` does not pay for nbformat, jupyter_client and
httpx before the server can answer `initialize` (issue 14).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import errors
from .errors import *  # noqa: F403 (the errors are public names of the package)

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .ci.batch import NotebookResult
    from .ci.notebook import Notebook
    from .jupyter.client import JupyterServer
    from .kernels.base import ExecutionResult, KernelState
    from .kernels.remote import RemoteKernel
    from .notebook.contents import ContentsStore
    from .notebook.store import LocalStore
    from .session.results import CellRef, CellView, Change, Execution, RunAll, UndoResult, Variable
    from .session.session import NotebookSession

#: Where each lazily imported public name lives.
_HOMES = {
    "NotebookResult": ".ci.batch",
    "Notebook": ".ci.notebook",
    "JupyterServer": ".jupyter.client",
    "ExecutionResult": ".kernels.base",
    "KernelState": ".kernels.base",
    "RemoteKernel": ".kernels.remote",
    "ContentsStore": ".notebook.contents",
    "LocalStore": ".notebook.store",
    "NotebookSession": ".session.session",
    **dict.fromkeys(
        ["CellRef", "CellView", "Change", "Execution", "RunAll", "UndoResult", "Variable"], ".session.results"
    ),
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'nbmcp' has no attribute {name!r}")
    value = getattr(importlib.import_module(home, __name__), name)
    globals()[name] = value  # once imported, a plain module attribute
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "CellRef",
    "CellView",
    "Change",
    "ContentsStore",
    "Execution",
    "ExecutionResult",
    "JupyterServer",
    "KernelState",
    "LocalStore",
    "Notebook",
    "NotebookResult",
    "NotebookSession",
    "RemoteKernel",
    "RunAll",
    "UndoResult",
    "Variable",
    "__version__",
]
__all__ += errors.__all__
