"""Tools of a server started with a folder: list its notebooks, choose one, close one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import anyio
from mcp.server.mcpserver import Context
from mcp.types import CallToolResult

from ...errors import UsageError
from ..paths import relative_name
from .answers import NotebooksAnswer
from .registry import tool, toolbox

__all__ = ["list_notebooks", "unuse_notebook", "use_notebook"]

Notebooks = Annotated[CallToolResult, NotebooksAnswer]


def _workspace() -> Any:
    ws = toolbox().workspace
    if ws is None:  # only registered on servers of a folder
        raise UsageError("this server serves a single notebook")
    return ws


@tool
async def list_notebooks(ctx: Context) -> Notebooks:
    """List the notebooks this server can work on: path, cell count, kernel state, which is active.

    Paths are relative to the served folder; pass one to use_notebook, or as notebook_path to any
    notebook tool. Notebooks that are not open show their kernel as "not started".
    """
    box, ws = toolbox(), _workspace()
    paths, cut = await anyio.to_thread.run_sync(ws.list_paths)
    active: Path | None = ws.active_path(ctx)
    lines: list[str] = []
    used = 0
    for path in paths:
        host = ws.hosts.get(path)
        flags = " [active]" if path == active else ""
        if host is not None:
            health = await host.health()
            cells = f", {health['cells']} cells" if health.get("cells") is not None else ""
            line = f"- {relative_name(ws.root, path)}{flags} (kernel {health['kernel']}{cells})"
        else:
            line = f"- {relative_name(ws.root, path)}{flags} (kernel not started)"
        if used + len(line) + 1 > box.max_output_chars:
            lines.append(f"[... {len(paths) - len(lines)} more not shown; pass a path you know to use_notebook ...]")
            cut = True
            break
        lines.append(line)
        used += len(line) + 1
    head = f"{len(paths)} notebook(s) under {ws.root}" + (
        " (list cut: more exist; pass a path you know to use_notebook)" if cut else ""
    )
    answer = NotebooksAnswer(text="\n".join([head, *lines]), root=str(ws.root), count=len(paths), truncated=cut)
    return box.reply(answer)


@tool
async def use_notebook(path: str, ctx: Context, create: bool = False) -> Notebooks:
    """Make the notebook at `path` (relative to the served folder) the one your calls work on.

    Its kernel starts in the background. With create=true a missing notebook is created (empty).
    The choice belongs to your MCP session only: other clients keep their own notebook.
    """
    box, ws = toolbox(), _workspace()
    host = await ws.use(ctx, path, create=create)
    info = await host.session.info()
    name = relative_name(ws.root, host.session.path)
    text = f"Now working on {name} ({info['total_cells']} cells)."
    return box.reply(NotebooksAnswer(text=text, root=str(ws.root), path=name, count=info["total_cells"]))


@tool
async def unuse_notebook(path: str, ctx: Context) -> Notebooks:
    """Close the notebook at `path`: shut its kernel down (its variables are lost) and stop watching it.

    The file is not touched. Use it for notebooks you are done with, to free memory.
    """
    box, ws = toolbox(), _workspace()
    target = ws.resolve(path)
    closed = await ws.close(target)
    name = relative_name(ws.root, target)
    text = f"Closed {name}; its kernel was shut down." if closed else f"{name} was not open."
    return box.reply(NotebooksAnswer(text=text, path=name, closed=closed))
