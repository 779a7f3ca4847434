"""The MCP tools: thin translations between MCP calls and `NotebookSession` calls.

No notebook logic lives here. Tool names, parameter names and defaults of the seed deployment are
kept exactly, so existing client set-ups and prompts keep working. Project errors become MCP error
results in one place: `_tool_errors`.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import (
    AudioContent,
    CallToolResult,
    EmbeddedResource,
    ImageContent,
    ResourceLink,
    TextContent,
    ToolAnnotations,
)

from .errors import NbmcpError
from .kernel import DEFAULT_TIMEOUT
from .render import (
    MAX_IMAGE_BYTES,
    MAX_OUTPUT_CHARS,
    ImagePart,
    Part,
    TextPart,
    output_text,
    render_outputs,
    truncate_middle,
)
from .session import CellRef, CellView, Execution, NotebookSession, RunAll

__all__ = ["SEED_TOOLS", "SessionGetter", "register_tools"]

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
SessionGetter = Callable[[Context], Awaitable[NotebookSession]]

#: Outputs shown per cell by read_all_cells (read_cell shows a cell's outputs in full budget).
ALL_CELLS_OUTPUT_CHARS = 2_000
#: Progress interval (seconds) of execute_cell_with_progress.
PROGRESS_INTERVAL = 1.0

SEED_TOOLS = (
    "append_markdown_cell",
    "insert_markdown_cell",
    "append_execute_code_cell",
    "insert_execute_code_cell",
    "overwrite_cell_source",
    "delete_cell",
    "execute_cell_simple_timeout",
    "execute_cell_streaming",
    "execute_cell_with_progress",
    "read_cell",
    "read_all_cells",
    "get_notebook_info",
)

READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True)
ADDS = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False)
REPLACES = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True)
DELETES = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=False)
RUNS = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=True)


def _tool_errors(fn: F) -> F:
    """Turn nbmcp's errors into MCP tool errors: the one place where that happens."""

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return await fn(*args, **kwargs)
        except NbmcpError as exc:
            raise ToolError(str(exc)) from exc

    return wrapper  # type: ignore[return-value]


Content = TextContent | ImageContent | AudioContent | ResourceLink | EmbeddedResource


def _content(parts: Sequence[Part]) -> list[Content]:
    out: list[Content] = []
    for part in parts:
        if isinstance(part, TextPart):
            out.append(TextContent(type="text", text=part.text))
        elif isinstance(part, ImagePart):
            out.append(ImageContent(type="image", data=part.data, mime_type=part.mime_type))
    return out


def _cell_name(index: int, cell_id: str | None) -> str:
    return f"cell {index} (id {cell_id})" if cell_id else f"cell {index}"


def _execution_result(execution: Execution, max_chars: int, max_image_bytes: int) -> CallToolResult:
    res = execution.result
    cell = execution.cell
    head = f"{_cell_name(cell.index, cell.id)} ran in {res.elapsed:.2f} s"
    if res.execution_count is not None:
        head += f", execution_count {res.execution_count}"
    head += {
        "ok": "",
        "error": "; the code raised an error (traceback below)",
        "timeout": "; TIMED OUT",
        "dead": "; THE KERNEL DIED",
    }.get(res.status, f"; {res.status}")
    notes = [res.note] if res.note else []
    notes += execution.notes
    parts = render_outputs(res.outputs, max_chars=max_chars, max_image_bytes=max_image_bytes)
    lines = [head] + [f"Note: {n}" for n in notes]
    if not parts:
        lines.append("(no output)")
    content = [TextContent(type="text", text="\n".join(lines)), *_content(parts)]
    structured = {
        "cell_index": cell.index,
        "cell_id": cell.id,
        "status": res.status,
        "execution_count": res.execution_count,
        "elapsed_seconds": round(res.elapsed, 3),
        "saved": execution.saved,
        "notes": notes,
    }
    return CallToolResult(content=content, structured_content=structured)


def _run_all_result(run: RunAll, max_chars: int) -> CallToolResult:
    """A run of many cells: one line per cell with its shortened output, the failing cell in full."""
    failed = run.failed
    if failed is None:
        head = f"Ran {len(run.executions)} of {run.total} code cells in {run.elapsed:.2f} s"
        head += "; every cell ran without error." if not run.errors else f"; {len(run.errors)} raised (allowed)."
    else:
        what = {"error": "raised an error", "timeout": "TIMED OUT", "dead": "KILLED THE KERNEL"}
        head = (
            f"Stopped: {_cell_name(failed.cell.index, failed.cell.id)} {what.get(failed.result.status, '')}; "
            f"ran {len(run.executions)} of {run.total} code cells in {run.elapsed:.2f} s. "
            "Its traceback is below; later cells were not run."
        )
    lines = [head] + [f"Note: {n}" for n in run.notes]
    for e in run.executions:
        status = "" if e.ok else f" [{e.result.status}]"
        lines.append(f"--- {_cell_name(e.cell.index, e.cell.id)} execution_count={e.result.execution_count}{status}")
        if e is failed:
            continue
        rendered = render_outputs(e.result.outputs, max_chars=ALL_CELLS_OUTPUT_CHARS, hint="read_cell shows more")
        text = next((p.text for p in rendered if isinstance(p, TextPart)), "")
        if text:
            lines.append(text)
        images = sum(isinstance(p, ImagePart) for p in rendered)
        if images:
            lines.append(f"[{images} image(s); read_cell({e.cell.index}) returns them]")
    if failed is not None:
        lines.append(failed.error_text() or "(no traceback)")
    text = truncate_middle("\n".join(lines), max_chars, "read_cell(index) returns any cell in full")
    structured = {
        "status": "ok" if failed is None else failed.result.status,
        "ran": len(run.executions),
        "total": run.total,
        "elapsed_seconds": round(run.elapsed, 3),
        "failed_cell": None if failed is None else {"cell_index": failed.cell.index, "cell_id": failed.cell.id},
        "cells": [
            {
                "cell_index": e.cell.index,
                "cell_id": e.cell.id,
                "status": e.result.status,
                "execution_count": e.result.execution_count,
            }
            for e in run.executions
        ],
        "notes": run.notes,
    }
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=structured)


def _cell_text(view: CellView, max_chars: int) -> str:
    lines = [f"--- {_cell_name(view.index, view.id)} [{view.cell_type}]"]
    if view.cell_type == "code":
        lines[0] += f" execution_count={view.execution_count}"
    lines.append(view.source)
    if view.outputs:
        rendered = render_outputs(view.outputs, max_chars=max_chars, hint=f"read_cell({view.index}) shows more")
        text = next((p.text for p in rendered if isinstance(p, TextPart)), "")
        images = sum(isinstance(p, ImagePart) for p in rendered)
        lines.append("Outputs:")
        if text:
            lines.append(text)
        if images:
            lines.append(f"[{images} image(s); read_cell({view.index}) returns them]")
    return "\n".join(lines)


def _cell_dict(view: CellView) -> dict[str, Any]:
    return {
        "index": view.index,
        "id": view.id,
        "cell_type": view.cell_type,
        "source": view.source,
        "execution_count": view.execution_count,
        "outputs": [output_text(o) or o.get("output_type", "output") for o in view.outputs],
    }


def register_tools(
    server: MCPServer,
    get_session: SessionGetter,
    *,
    max_output_chars: int = MAX_OUTPUT_CHARS,
    max_image_bytes: int = MAX_IMAGE_BYTES,
    default_timeout: float = DEFAULT_TIMEOUT,
) -> None:
    """Register the seed tools on `server`; `get_session` gives the notebook a call works on."""

    def result_of(execution: Execution) -> CallToolResult:
        return _execution_result(execution, max_output_chars, max_image_bytes)

    async def run(
        ctx: Context, session: NotebookSession, index: int, timeout: float, interval: float | None
    ) -> CallToolResult:
        progress = None
        if interval is not None:
            total = timeout

            async def progress(elapsed: float, last_line: str) -> None:
                message = f"running for {elapsed:.0f} s"
                if last_line:
                    message += f"; latest output: {last_line[:200]}"
                await ctx.report_progress(elapsed, total, message)

        execution = await session.execute_cell(
            index, timeout=timeout, on_progress=progress, progress_every=interval or PROGRESS_INTERVAL
        )
        return result_of(execution)

    async def add_and_run(ctx: Context, index: int, source: str) -> CallToolResult:
        session = await get_session(ctx)
        ref = await session.insert_cell(index, "code", source)
        return await run(ctx, session, ref.index, default_timeout, PROGRESS_INTERVAL)

    @server.tool(annotations=ADDS)
    @_tool_errors
    async def append_markdown_cell(cell_source: str, ctx: Context) -> CallToolResult:
        """Add a markdown cell at the end of the notebook.

        Use it for headings, explanations and documentation. Returns the new cell's index and id.
        """
        session = await get_session(ctx)
        ref = await session.insert_cell(-1, "markdown", cell_source)
        return CallToolResult(
            content=[TextContent(type="text", text=f"Added markdown {_cell_name(ref.index, ref.id)} at the end.")],
            structured_content={"cell_index": ref.index, "cell_id": ref.id},
        )

    @server.tool(annotations=ADDS)
    @_tool_errors
    async def insert_markdown_cell(cell_index: int, cell_source: str, ctx: Context) -> CallToolResult:
        """Insert a markdown cell before the cell at `cell_index` (0 = top; the cell count or -1 = end).

        Cells at and after that index shift down by one. Returns the new cell's index and id.
        """
        session = await get_session(ctx)
        ref = await session.insert_cell(cell_index, "markdown", cell_source)
        return CallToolResult(
            content=[TextContent(type="text", text=f"Inserted markdown {_cell_name(ref.index, ref.id)}.")],
            structured_content={"cell_index": ref.index, "cell_id": ref.id},
        )

    @server.tool(annotations=RUNS)
    @_tool_errors
    async def append_execute_code_cell(cell_source: str, ctx: Context) -> CallToolResult:
        """Add a code cell at the end of the notebook and run it; returns its outputs.

        The outputs (text, tracebacks, images) are saved in the notebook. An exception in the code is a
        normal result that shows the traceback. Runs for at most 300 s, then the kernel is interrupted.
        """
        return await add_and_run(ctx, -1, cell_source)

    @server.tool(annotations=RUNS)
    @_tool_errors
    async def insert_execute_code_cell(cell_index: int, cell_source: str, ctx: Context) -> CallToolResult:
        """Insert a code cell before the cell at `cell_index` (the cell count or -1 = end) and run it.

        Returns its outputs, which are also saved in the notebook.
        """
        return await add_and_run(ctx, cell_index, cell_source)

    @server.tool(annotations=REPLACES)
    @_tool_errors
    async def overwrite_cell_source(cell_index: int, cell_source: str, ctx: Context) -> CallToolResult:
        """Replace the whole source of the cell at `cell_index` (its outputs are kept; it is not run).

        Returns a unified diff of the change. Run the cell afterwards with an execute tool if needed.
        """
        session = await get_session(ctx)
        ref, diff = await session.overwrite_source(cell_index, cell_source)
        text = f"Overwrote the source of {_cell_name(ref.index, ref.id)}.\n" + (diff or "(no change)")
        return CallToolResult(
            content=[TextContent(type="text", text=text)],
            structured_content={"cell_index": ref.index, "cell_id": ref.id, "diff": diff},
        )

    @server.tool(annotations=DELETES)
    @_tool_errors
    async def delete_cell(cell_index: int, ctx: Context) -> CallToolResult:
        """Delete the cell at `cell_index`; the cells after it shift up by one.

        Returns what was deleted (type, id and the start of its source).
        """
        session = await get_session(ctx)
        view = await session.delete_cell(cell_index)
        first = view.source.strip().splitlines()[0][:80] if view.source.strip() else "(empty)"
        text = f"Deleted {view.cell_type} {_cell_name(view.index, view.id)}: {first}"
        return CallToolResult(
            content=[TextContent(type="text", text=text)],
            structured_content={"cell_index": view.index, "cell_id": view.id, "cell_type": view.cell_type},
        )

    @server.tool(annotations=RUNS)
    @_tool_errors
    async def execute_cell_simple_timeout(cell_index: int, ctx: Context, timeout_seconds: int = 300) -> CallToolResult:
        """Run the code cell at `cell_index` and return its outputs (saved in the notebook too).

        If it runs longer than `timeout_seconds`, the kernel is interrupted and the partial outputs are
        returned; the kernel stays usable. Use execute_cell_with_progress for long-running cells.
        """
        session = await get_session(ctx)
        return await run(ctx, session, cell_index, timeout_seconds, None)

    @server.tool(annotations=RUNS)
    @_tool_errors
    async def execute_cell_streaming(
        cell_index: int, ctx: Context, timeout_seconds: int = 300, progress_interval: int = 5
    ) -> CallToolResult:
        """Run the code cell at `cell_index`, sending a progress notification every `progress_interval` s.

        Each notification carries the elapsed time and the latest output line. Returns the outputs when
        the cell finishes (or is interrupted after `timeout_seconds`).
        """
        session = await get_session(ctx)
        return await run(ctx, session, cell_index, timeout_seconds, max(progress_interval, 1))

    @server.tool(annotations=RUNS)
    @_tool_errors
    async def execute_cell_with_progress(cell_index: int, ctx: Context, timeout_seconds: int = 300) -> CallToolResult:
        """Run the code cell at `cell_index`, sending progress notifications every second while it runs.

        Returns the outputs when it finishes; after `timeout_seconds` the kernel is interrupted and the
        partial outputs are returned.
        """
        session = await get_session(ctx)
        return await run(ctx, session, cell_index, timeout_seconds, PROGRESS_INTERVAL)

    @server.tool(annotations=RUNS)
    @_tool_errors
    async def execute_all_cells(
        ctx: Context,
        start_index: int = 0,
        end_index: int = -1,
        timeout_seconds: int = 300,
        stop_on_error: bool = True,
    ) -> CallToolResult:
        """Run the code cells from `start_index` to `end_index` (inclusive; -1 = the last cell) in order.

        Like "Run All" in Jupyter: outputs are saved in each cell as it finishes, blank cells and cells
        tagged skip-execution are skipped. Stops at the first cell that raises (unless `stop_on_error`
        is false), times out (`timeout_seconds` per cell) or kills the kernel, and returns that cell's
        traceback. Sends a progress notification per cell ("cell k of n"). Returns every cell's status
        and shortened outputs. To run one cell, use an execute_cell tool instead.
        """
        session = await get_session(ctx)
        current = [0, 0]  # k (0-based) and n of the cell running now, for progress in the middle of a cell

        async def before(k: int, n: int, ref: CellRef) -> None:
            current[:] = [k - 1, n]
            await ctx.report_progress(k - 1, n, f"cell {k} of {n}: {_cell_name(ref.index, ref.id)}")

        async def during(elapsed: float, last_line: str) -> None:
            k, n = current
            # Progress must grow with every notification: stay below the next cell's whole number.
            message = f"cell {k + 1} of {n} running for {elapsed:.0f} s"
            if last_line:
                message += f"; latest output: {last_line[:200]}"
            await ctx.report_progress(k + min(elapsed / max(timeout_seconds, 1), 0.99), n, message)

        # end_index is inclusive, as the model reads "from 2 to 5"; run_all takes a Python-style stop.
        stop = None if end_index == -1 else end_index + 1
        run = await session.run_all(
            start_index,
            stop,
            timeout=timeout_seconds,
            stop_on_error=stop_on_error,
            before_cell=before,
            on_progress=during,
            progress_every=PROGRESS_INTERVAL,
        )
        await ctx.report_progress(run.total, run.total, f"done: ran {len(run.executions)} of {run.total}")
        return _run_all_result(run, max_output_chars)

    @server.tool(annotations=READ_ONLY)
    @_tool_errors
    async def read_cell(cell_index: int, ctx: Context) -> CallToolResult:
        """Read one cell: its index, id, type, source, execution count and outputs (images included)."""
        session = await get_session(ctx)
        view = await session.read_cell(cell_index)
        head = f"{_cell_name(view.index, view.id)} [{view.cell_type}]"
        if view.cell_type == "code":
            head += f" execution_count={view.execution_count}"
        content: list[Content] = [TextContent(type="text", text=f"{head}\n{view.source}")]
        if view.outputs:
            parts = render_outputs(view.outputs, max_chars=max_output_chars, max_image_bytes=max_image_bytes)
            content.append(TextContent(type="text", text="Outputs:"))
            content += _content(parts)
        return CallToolResult(content=content, structured_content=_cell_dict(view))

    @server.tool(annotations=READ_ONLY)
    @_tool_errors
    async def read_all_cells(ctx: Context) -> CallToolResult:
        """Read every cell: index, id, type, source, execution count and (shortened) text outputs.

        Use read_cell for one cell's full outputs and images.
        """
        session = await get_session(ctx)
        views = await session.read_cells()
        if not views:
            text = "The notebook has no cells."
        else:
            text = "\n\n".join(_cell_text(v, ALL_CELLS_OUTPUT_CHARS) for v in views)
            text = truncate_middle(text, max_output_chars * 5, "read_cell(index) returns any cell in full")
        return CallToolResult(
            content=[TextContent(type="text", text=text)],
            structured_content={"cells": [_cell_dict(v) for v in views]},
        )

    @server.tool(annotations=READ_ONLY)
    @_tool_errors
    async def get_notebook_info(ctx: Context) -> CallToolResult:
        """Notebook path, total cell count, counts by cell type, and the kernel's name and state."""
        session = await get_session(ctx)
        info = await session.info()
        return CallToolResult(
            content=[TextContent(type="text", text=json.dumps(info, indent=1))], structured_content=info
        )
