"""The MCP server: builds the MCPServer for a notebook and runs it on a transport."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from mcp.server.mcpserver import Context, MCPServer

from . import __version__
from .config import Settings
from .session import NotebookSession
from .tools import register_tools

__all__ = ["INSTRUCTIONS", "build_server", "run"]

logger = logging.getLogger(__name__)

INSTRUCTIONS = """\
nbmcp edits and runs one Jupyter notebook (.ipynb) on disk. Every change is saved to the file
immediately, so a person who has the notebook open in VS Code or JupyterLab sees it. Cells are
addressed by index (0 = first cell); read_all_cells or get_notebook_info tell you how many there are.
Code runs in a kernel that keeps its state between calls, like a notebook a person runs cell by cell.
A person may edit the notebook at the same time: read it again before relying on indices from long ago.
"""


def build_server(settings: Settings, session: NotebookSession | None = None) -> MCPServer:
    """An MCPServer serving the notebook of `settings` (or the given session)."""
    if session is None:
        session = NotebookSession(
            settings.path, kernel_name=settings.kernel, python=settings.python, timeout=settings.timeout
        )
    notebook = session

    @asynccontextmanager
    async def lifespan(app: MCPServer) -> AsyncIterator[None]:
        try:
            await notebook.open()
        except Exception as exc:
            # The server still answers, so the client can show the user why tools fail.
            logger.error("could not open %s: %s", notebook.path, exc)
        try:
            yield
        finally:
            await notebook.close()

    async def get_session(ctx: Context) -> NotebookSession:
        if notebook.kernel is None:
            await notebook.open()
        return notebook

    server: MCPServer = MCPServer(
        "nbmcp",
        version=__version__,
        instructions=INSTRUCTIONS,
        lifespan=lifespan,
        log_level=settings.log_level,  # type: ignore[arg-type]
    )
    register_tools(
        server,
        get_session,
        max_output_chars=settings.max_output_chars,
        max_image_bytes=settings.max_image_bytes,
        default_timeout=settings.timeout,
    )
    return server


def run(settings: Settings) -> None:
    """Serve until the client disconnects (stdio)."""
    server = build_server(settings)
    server.run("stdio")
