"""The MCP tools: thin translations between MCP calls and `NotebookSession` calls.

No notebook logic lives here. Tool names, parameter names and defaults of the seed deployment are
kept exactly (each tool that takes `cell_index` also accepts `cell_id`, issue 4), so existing client
set-ups and prompts keep working. Project errors become MCP error results in one place: `_guarded`.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import json
import logging
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import anyio
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

from .errors import NbmcpError, ToolDisabledError, UsageError
from .kernel import DEFAULT_TIMEOUT, ExecutionResult
from .render import (
    MAX_IMAGE_BYTES,
    MAX_OUTPUT_CHARS,
    ImagePart,
    Part,
    TextPart,
    output_text,
    page_text,
    render_outputs,
    truncate_middle,
)
from .session import CellRef, CellView, Execution, NotebookSession, RunAll

if TYPE_CHECKING:
    from .server import Workspace

__all__ = [
    "ALL_TOOLS",
    "MAX_READ_LIMIT",
    "READ_NOTEBOOK_LIMIT",
    "READ_ONLY_TOOLS",
    "SEED_TOOLS",
    "TOOL_ANNOTATIONS",
    "WORKSPACE_TOOLS",
    "SessionGetter",
    "exposed_tools",
    "register_tools",
    "requested_notebook",
]

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
SessionGetter = Callable[[Context], Awaitable[NotebookSession]]

#: The notebook_path a tool call named, for the workspace to resolve (None: the client's active one).
requested_notebook: contextvars.ContextVar[str | None] = contextvars.ContextVar("requested_notebook", default=None)

_NOTEBOOK_PATH = inspect.Parameter("notebook_path", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=str | None)

#: Outputs shown per cell by read_all_cells and detailed read_notebook (read_cell shows more).
ALL_CELLS_OUTPUT_CHARS = 2_000
#: Progress interval (seconds) of execute_cell_with_progress and execute_cell.
PROGRESS_INTERVAL = 1.0
#: Cells per read_notebook page by default, and at most.
READ_NOTEBOOK_LIMIT = 50
MAX_READ_LIMIT = 500
#: Characters of a cell's first line in a brief read_notebook line.
BRIEF_LINE_CHARS = 100

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
EDITS = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=False)
DELETES = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=False)
RUNS = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=True)
#: Interrupting or restarting loses running work or variables, but doing it twice changes nothing more.
KERNEL_CONTROL = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True)

#: Every tool and its MCP annotations: the one table --tools and --read-only are checked against.
TOOL_ANNOTATIONS: dict[str, ToolAnnotations] = {
    "append_markdown_cell": ADDS,
    "insert_markdown_cell": ADDS,
    "append_execute_code_cell": RUNS,
    "insert_execute_code_cell": RUNS,
    "overwrite_cell_source": REPLACES,
    "delete_cell": DELETES,
    "execute_cell_simple_timeout": RUNS,
    "execute_cell_streaming": RUNS,
    "execute_cell_with_progress": RUNS,
    "read_cell": READ_ONLY,
    "read_all_cells": READ_ONLY,
    "get_notebook_info": READ_ONLY,
    "read_notebook": READ_ONLY,
    "read_cell_output": READ_ONLY,
    # Runs an introspection snippet in the kernel that defines nothing and saves nothing.
    "list_variables": READ_ONLY,
    "insert_cell": ADDS,
    "edit_cell_source": EDITS,
    "move_cell": ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False),
    "clear_cell_output": REPLACES,
    "clear_all_outputs": REPLACES,
    "execute_cell": RUNS,
    "execute_all_cells": RUNS,
    "execute_code": RUNS,
    "interrupt_kernel": KERNEL_CONTROL,
    "restart_kernel": KERNEL_CONTROL,
    # Several notebooks in one server (issue 5): choosing one changes no file.
    "list_notebooks": READ_ONLY,
    "use_notebook": ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True),
    # Shuts the notebook's kernel down: its variables are lost.
    "unuse_notebook": ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True),
}
WORKSPACE_TOOLS = ("list_notebooks", "use_notebook", "unuse_notebook")
ALL_TOOLS = tuple(TOOL_ANNOTATIONS)
READ_ONLY_TOOLS = tuple(name for name, a in TOOL_ANNOTATIONS.items() if a.read_only_hint)


def exposed_tools(only: Collection[str] | None = None, *, read_only: bool = False) -> frozenset[str]:
    """The tools a server lists: those in `only` (all when None), read-only ones only if `read_only`."""
    if only is not None:
        unknown = sorted(set(only) - set(ALL_TOOLS))
        if unknown:
            raise UsageError(f"unknown tool(s) {', '.join(unknown)}; valid: {', '.join(ALL_TOOLS)}")
    names = set(ALL_TOOLS if only is None else only)
    if read_only:
        names &= set(READ_ONLY_TOOLS)
    if not names:
        raise UsageError(f"no tool left to expose; with --read-only, --tools may name: {', '.join(READ_ONLY_TOOLS)}")
    return frozenset(names)


def _refusal(name: str, only: Collection[str] | None, read_only: bool) -> str:
    if read_only and name not in READ_ONLY_TOOLS:
        return (
            "this server runs with --read-only, so tools that change the notebook or run code are refused; "
            f"available: {', '.join(n for n in ALL_TOOLS if n in READ_ONLY_TOOLS and (only is None or n in only))}"
        )
    return (
        f"this server exposes only the tools given with --tools: {', '.join(n for n in ALL_TOOLS if n in (only or ()))}"
    )


Content = TextContent | ImageContent | AudioContent | ResourceLink | EmbeddedResource


def _content(parts: Sequence[Part]) -> list[Content]:
    out: list[Content] = []
    for part in parts:
        if isinstance(part, TextPart):
            out.append(TextContent(type="text", text=part.text))
        elif isinstance(part, ImagePart):
            out.append(ImageContent(type="image", data=part.data, mime_type=part.mime_type))
    return out


def _text(text: str, structured: dict[str, Any]) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=structured)


def _cell_name(index: int, cell_id: str | None) -> str:
    return f"cell {index} (id {cell_id})" if cell_id else f"cell {index} (no id: nbformat 4.4 notebook)"


def _ref_name(ref: CellRef) -> str:
    return _cell_name(ref.index, ref.id)


def _address(index: int, cell_id: str | None) -> str:
    """How read_cell_output should name the cell: by id when it has one, since ids survive edits."""
    return f"cell_id={cell_id!r}" if cell_id else f"cell_index={index}"


def _ref_dict(ref: CellRef) -> dict[str, Any]:
    return {"cell_index": ref.index, "cell_id": ref.id}


def _result_head(res: ExecutionResult, what: str, *, counted: bool = True) -> str:
    head = f"{what} ran in {res.elapsed:.2f} s"
    if counted and res.execution_count is not None:
        head += f", execution_count {res.execution_count}"
    return head + {
        "ok": "",
        "error": "; the code raised an error (traceback below)",
        "timeout": "; TIMED OUT",
        "dead": "; THE KERNEL DIED",
    }.get(res.status, f"; {res.status}")


def _execution_result(execution: Execution, max_chars: int, max_image_bytes: int) -> CallToolResult:
    res = execution.result
    cell = execution.cell
    notes = [res.note] if res.note else []
    notes += execution.notes
    address = _address(cell.index, cell.id) if execution.saved else None
    parts = render_outputs(res.outputs, max_chars=max_chars, max_image_bytes=max_image_bytes, cell=address)
    lines = [_result_head(res, _ref_name(cell))] + [f"Note: {n}" for n in notes]
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
        rendered = render_outputs(
            e.result.outputs, max_chars=ALL_CELLS_OUTPUT_CHARS, cell=_address(e.cell.index, e.cell.id)
        )
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
        rendered = render_outputs(view.outputs, max_chars=max_chars, cell=_address(view.index, view.id))
        text = next((p.text for p in rendered if isinstance(p, TextPart)), "")
        images = sum(isinstance(p, ImagePart) for p in rendered)
        lines.append("Outputs:")
        if text:
            lines.append(text)
        if images:
            lines.append(f"[{images} image(s); read_cell({_address(view.index, view.id)}) returns them]")
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


def _first_line(source: str) -> str:
    stripped = source.strip()
    line = stripped.splitlines()[0] if stripped else "(empty)"
    return line if len(line) <= BRIEF_LINE_CHARS else line[: BRIEF_LINE_CHARS - 3] + "..."


def _brief_dict(view: CellView) -> dict[str, Any]:
    return {
        "index": view.index,
        "id": view.id,
        "cell_type": view.cell_type,
        "first_line": _first_line(view.source),
        "execution_count": view.execution_count,
        "outputs": len(view.outputs),
    }


def _brief_line(view: CellView) -> str:
    line = f"{view.index:>4} {view.id or '-'} {view.cell_type}"
    if view.cell_type == "code":
        line += f" [{view.execution_count if view.execution_count is not None else ' '}]"
        if view.outputs:
            line += f" ({len(view.outputs)} output{'s' if len(view.outputs) > 1 else ''})"
    return f"{line}: {_first_line(view.source)}"


NOTEBOOK_PATH_DOC = """

        `notebook_path` (optional) names the notebook to work on, relative to the served folder;
        by default the call works on the notebook chosen with use_notebook (or the server's notebook).
"""


def register_tools(
    server: MCPServer,
    get_session: SessionGetter,
    *,
    max_output_chars: int = MAX_OUTPUT_CHARS,
    max_image_bytes: int = MAX_IMAGE_BYTES,
    default_timeout: float = DEFAULT_TIMEOUT,
    tools: Collection[str] | None = None,
    read_only: bool = False,
    workspace: Workspace | None = None,
) -> frozenset[str]:
    """Register every tool on `server`; returns the names it should list (`--tools`, `--read-only`).

    `get_session` gives the notebook a call works on. Tools outside the exposed set stay registered
    so that a call by name gets a clear refusal instead of "unknown tool".
    """
    exposed = exposed_tools(tools, read_only=read_only)

    def tool(fn: F) -> F:
        """Register `fn` with its annotations; the one place project errors become MCP errors.

        Every notebook tool also takes an optional `notebook_path` (the notebook the call works on,
        relative to the served folder); it is added here, once, instead of in each tool.
        """
        name = fn.__name__
        refusal = None if name in exposed else _refusal(name, tools, read_only)
        takes_notebook = name not in WORKSPACE_TOOLS

        @functools.wraps(fn)
        async def guarded(*args: Any, **kwargs: Any) -> Any:
            token = requested_notebook.set(kwargs.pop("notebook_path", None) if takes_notebook else None)
            try:
                if refusal is not None:
                    raise ToolDisabledError(name, refusal)
                return await fn(*args, **kwargs)
            except NbmcpError as exc:
                raise ToolError(str(exc)) from exc
            finally:
                requested_notebook.reset(token)

        if takes_notebook:
            signature = inspect.signature(fn, eval_str=True)
            guarded.__signature__ = signature.replace(  # type: ignore[attr-defined]
                parameters=[*signature.parameters.values(), _NOTEBOOK_PATH]
            )
            guarded.__doc__ = (fn.__doc__ or "").rstrip() + NOTEBOOK_PATH_DOC
        server.tool(annotations=TOOL_ANNOTATIONS[name])(guarded)
        return fn

    def result_of(execution: Execution) -> CallToolResult:
        return _execution_result(execution, max_output_chars, max_image_bytes)

    def progress_reporter(ctx: Context, total: float) -> Callable[[float, str], Awaitable[None]]:
        async def progress(elapsed: float, last_line: str) -> None:
            message = f"running for {elapsed:.0f} s"
            if last_line:
                message += f"; latest output: {last_line[:200]}"
            await ctx.report_progress(elapsed, total, message)

        return progress

    async def run(
        ctx: Context,
        session: NotebookSession,
        index: int | None,
        cell_id: str | None,
        timeout: float,
        interval: float | None,
    ) -> CallToolResult:
        progress = None if interval is None else progress_reporter(ctx, timeout)
        execution = await session.execute_cell(
            index,
            cell_id=cell_id,
            timeout=timeout,
            on_progress=progress,
            progress_every=interval or PROGRESS_INTERVAL,
        )
        return result_of(execution)

    async def add_and_run(ctx: Context, index: int | None, cell_id: str | None, source: str) -> CallToolResult:
        session = await get_session(ctx)
        ref = await session.insert_cell(index, "code", source, cell_id=cell_id)
        return await run(ctx, session, None, ref.id, default_timeout, PROGRESS_INTERVAL)

    async def inserted(
        ctx: Context, index: int | None, cell_id: str | None, cell_type: str, source: str
    ) -> CallToolResult:
        session = await get_session(ctx)
        ref = await session.insert_cell(index, cell_type, source, cell_id=cell_id)
        return _text(f"Inserted {cell_type} {_ref_name(ref)}.", _ref_dict(ref))

    # -- the seed tools ---------------------------------------------------------------------------

    @tool
    async def append_markdown_cell(cell_source: str, ctx: Context) -> CallToolResult:
        """Add a markdown cell at the end of the notebook.

        Use it for headings, explanations and documentation. Returns the new cell's index and id.
        """
        session = await get_session(ctx)
        ref = await session.insert_cell(-1, "markdown", cell_source)
        return _text(f"Added markdown {_ref_name(ref)} at the end.", _ref_dict(ref))

    @tool
    async def insert_markdown_cell(
        ctx: Context, cell_index: int | None = None, *, cell_source: str, cell_id: str | None = None
    ) -> CallToolResult:
        """Insert a markdown cell before the cell at `cell_index` (0 = top; the cell count or -1 = end).

        Or give `cell_id` instead of `cell_index` to insert before that cell. Cells at and after that
        position shift down by one. Returns the new cell's index and id.
        """
        return await inserted(ctx, cell_index, cell_id, "markdown", cell_source)

    @tool
    async def append_execute_code_cell(cell_source: str, ctx: Context) -> CallToolResult:
        """Add a code cell at the end of the notebook and run it; returns its outputs.

        The outputs (text, tracebacks, images) are saved in the notebook. An exception in the code is a
        normal result that shows the traceback. Runs for at most 300 s, then the kernel is interrupted.
        """
        return await add_and_run(ctx, -1, None, cell_source)

    @tool
    async def insert_execute_code_cell(
        ctx: Context, cell_index: int | None = None, *, cell_source: str, cell_id: str | None = None
    ) -> CallToolResult:
        """Insert a code cell before the cell at `cell_index` (the cell count or -1 = end) and run it.

        Or give `cell_id` instead to insert before that cell. Returns its outputs, which are also saved
        in the notebook.
        """
        return await add_and_run(ctx, cell_index, cell_id, cell_source)

    @tool
    async def overwrite_cell_source(
        ctx: Context, cell_index: int | None = None, *, cell_source: str, cell_id: str | None = None
    ) -> CallToolResult:
        """Replace the whole source of the cell at `cell_index` or with `cell_id` (outputs kept; not run).

        Returns a unified diff of the change. To change a few lines of a long cell, edit_cell_source
        is safer. Run the cell afterwards with an execute tool if needed.
        """
        session = await get_session(ctx)
        ref, diff = await session.overwrite_source(cell_index, cell_source, cell_id=cell_id)
        text = f"Overwrote the source of {_ref_name(ref)}.\n" + (diff or "(no change)")
        return _text(text, _ref_dict(ref) | {"diff": diff})

    @tool
    async def delete_cell(ctx: Context, cell_index: int | None = None, cell_id: str | None = None) -> CallToolResult:
        """Delete the cell at `cell_index` (or with `cell_id`); the cells after it shift up by one.

        Returns what was deleted (type, index, id and the start of its source).
        """
        session = await get_session(ctx)
        view = await session.delete_cell(cell_index, cell_id=cell_id)
        text = f"Deleted {view.cell_type} {_cell_name(view.index, view.id)}: {_first_line(view.source)}"
        return _text(text, {"cell_index": view.index, "cell_id": view.id, "cell_type": view.cell_type})

    @tool
    async def execute_cell_simple_timeout(
        ctx: Context, cell_index: int | None = None, timeout_seconds: int = 300, cell_id: str | None = None
    ) -> CallToolResult:
        """Run the code cell at `cell_index` (or with `cell_id`) and return its outputs (also saved).

        If it runs longer than `timeout_seconds`, the kernel is interrupted and the partial outputs are
        returned; the kernel stays usable. Use execute_cell_with_progress for long-running cells.
        """
        session = await get_session(ctx)
        return await run(ctx, session, cell_index, cell_id, timeout_seconds, None)

    @tool
    async def execute_cell_streaming(
        ctx: Context,
        cell_index: int | None = None,
        timeout_seconds: int = 300,
        progress_interval: int = 5,
        cell_id: str | None = None,
    ) -> CallToolResult:
        """Run the code cell at `cell_index` (or `cell_id`), with progress every `progress_interval` s.

        Each notification carries the elapsed time and the latest output line. Returns the outputs when
        the cell finishes (or is interrupted after `timeout_seconds`).
        """
        session = await get_session(ctx)
        return await run(ctx, session, cell_index, cell_id, timeout_seconds, max(progress_interval, 1))

    @tool
    async def execute_cell_with_progress(
        ctx: Context, cell_index: int | None = None, timeout_seconds: int = 300, cell_id: str | None = None
    ) -> CallToolResult:
        """Run the code cell at `cell_index` (or `cell_id`), with progress notifications every second.

        Returns the outputs when it finishes; after `timeout_seconds` the kernel is interrupted and the
        partial outputs are returned.
        """
        session = await get_session(ctx)
        return await run(ctx, session, cell_index, cell_id, timeout_seconds, PROGRESS_INTERVAL)

    @tool
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

    @tool
    async def read_cell(ctx: Context, cell_index: int | None = None, cell_id: str | None = None) -> CallToolResult:
        """Read one cell, by `cell_index` or `cell_id`: index, id, type, source, execution count, outputs.

        Outputs are shown within the output budget (images included); read_cell_output pages through
        an output that was cut.
        """
        session = await get_session(ctx)
        view = await session.read_cell(cell_index, cell_id=cell_id)
        head = f"{_cell_name(view.index, view.id)} [{view.cell_type}]"
        if view.cell_type == "code":
            head += f" execution_count={view.execution_count}"
        content: list[Content] = [TextContent(type="text", text=f"{head}\n{view.source}")]
        if view.outputs:
            parts = render_outputs(
                view.outputs,
                max_chars=max_output_chars,
                max_image_bytes=max_image_bytes,
                cell=_address(view.index, view.id),
            )
            content.append(TextContent(type="text", text="Outputs:"))
            content += _content(parts)
        return CallToolResult(content=content, structured_content=_cell_dict(view))

    @tool
    async def read_all_cells(ctx: Context) -> CallToolResult:
        """Read every cell: index, id, type, source, execution count and (shortened) text outputs.

        On a large notebook, read_notebook pages through the cells instead. read_cell shows one cell's
        outputs and images in full budget.
        """
        session = await get_session(ctx)
        views = await session.read_cells()
        if not views:
            text = "The notebook has no cells."
        else:
            text = "\n\n".join(_cell_text(v, ALL_CELLS_OUTPUT_CHARS) for v in views)
            text = truncate_middle(
                text, max_output_chars * 5, "read_notebook(start_index=..., limit=...) pages through the cells"
            )
        return _text(text, {"cells": [_cell_dict(v) for v in views]})

    @tool
    async def get_notebook_info(ctx: Context) -> CallToolResult:
        """Notebook path, total cell count, counts by cell type, and the kernel's name, state, interpreter."""
        session = await get_session(ctx)
        info = await session.info()
        return _text(json.dumps(info, indent=1), info)

    # -- reading ----------------------------------------------------------------------------------

    @tool
    async def read_notebook(
        ctx: Context,
        start_index: int = 0,
        limit: int = READ_NOTEBOOK_LIMIT,
        response_format: Literal["brief", "detailed"] = "brief",
    ) -> CallToolResult:
        """A page of the notebook's cells: the way to get an overview of a large notebook.

        brief (default): one line per cell with index, id, type, execution count, number of outputs
        and first line. detailed: each cell's full source and shortened outputs. Returns at most
        `limit` cells (max 500) from `start_index`; the answer says where the next page starts.
        """
        if not 1 <= limit <= MAX_READ_LIMIT:
            raise UsageError(f"limit must be between 1 and {MAX_READ_LIMIT}, not {limit}")
        session = await get_session(ctx)
        views, total = await session.read_page(start_index, limit)
        next_start = start_index + len(views) if start_index + len(views) < total else None
        if not views:
            head = "The notebook has no cells."
        else:
            head = f"Cells {views[0].index} to {views[-1].index} of {total} ({response_format})."
            head += f" Next page: read_notebook(start_index={next_start})." if next_start is not None else " Last page."
        if response_format == "brief":
            body = "\n".join(_brief_line(v) for v in views)
            cells = [_brief_dict(v) for v in views]
        else:
            body = "\n\n".join(_cell_text(v, ALL_CELLS_OUTPUT_CHARS) for v in views)
            body = truncate_middle(body, max_output_chars, "ask for fewer cells (limit) or use read_cell")
            cells = [_cell_dict(v) for v in views]
        structured = {
            "total_cells": total,
            "start_index": start_index,
            "next_start_index": next_start,
            "response_format": response_format,
            "cells": cells,
        }
        return _text(f"{head}\n{body}" if body else head, structured)

    @tool
    async def read_cell_output(
        ctx: Context,
        cell_index: int | None = None,
        cell_id: str | None = None,
        output_index: int = 0,
        offset: int = 0,
        max_chars: int | None = None,
    ) -> CallToolResult:
        """The text of one output of a cell, from character `offset`: the rest of an output that was cut.

        A cut output's marker names the exact call (cell, output_index, offset). Returns at most
        `max_chars` characters (default and maximum: the server's output budget); the structured
        result has {text, offset, next_offset, total_chars}, next_offset null at the end. Images of
        the output within the image cap are returned too.
        """
        limit = max_output_chars if max_chars is None else min(max_chars, max_output_chars)
        session = await get_session(ctx)
        ref, output = await session.read_output(cell_index, output_index, cell_id=cell_id)
        page = page_text(output_text(output), offset, limit)
        images = [p for p in render_outputs([output], max_image_bytes=max_image_bytes) if isinstance(p, ImagePart)]
        head = f"{_ref_name(ref)}, output {output_index}: characters {page.offset} to {page.offset + len(page.text)}"
        head += f" of {page.total_chars}"
        head += f"; next: offset={page.next_offset}" if page.next_offset is not None else " (the end)"
        structured = {
            "text": page.text,
            "offset": page.offset,
            "next_offset": page.next_offset,
            "total_chars": page.total_chars,
        } | _ref_dict(ref)
        content: list[Content] = [TextContent(type="text", text=head), TextContent(type="text", text=page.text)]
        return CallToolResult(content=content + _content(images), structured_content=structured)

    @tool
    async def list_variables(ctx: Context) -> CallToolResult:
        """The user's variables in the kernel: name, type, shape (arrays, frames) and a short repr.

        Adds no cell and saves nothing; modules and names starting with "_" are left out.
        """
        session = await get_session(ctx)
        variables, total = await session.list_variables()
        lines = [f"{total} variable(s)" + (f", first {len(variables)} shown" if total > len(variables) else "")]
        for v in variables:
            shape = f" shape={tuple(v.shape)}" if v.shape else ""
            lines.append(f"{v.name}: {v.type}{shape} = {v.repr}")
        structured = {
            "total": total,
            "variables": [{"name": v.name, "type": v.type, "shape": v.shape, "repr": v.repr} for v in variables],
        }
        return _text("\n".join(lines), structured)

    # -- editing ----------------------------------------------------------------------------------

    @tool
    async def insert_cell(
        ctx: Context,
        cell_index: int | None = None,
        *,
        cell_type: Literal["code", "markdown", "raw"],
        cell_source: str,
        cell_id: str | None = None,
    ) -> CallToolResult:
        """Insert a code, markdown or raw cell before `cell_index` (-1 appends) or before the cell `cell_id`.

        The cell is not run (execute_cell runs it). Returns the new cell's index and id.
        """
        return await inserted(ctx, cell_index, cell_id, cell_type, cell_source)

    @tool
    async def edit_cell_source(
        ctx: Context,
        cell_index: int | None = None,
        *,
        old_string: str,
        new_string: str,
        replace_all: bool = False,
        cell_id: str | None = None,
    ) -> CallToolResult:
        """Replace exact text inside a cell's source; returns a diff. The cell is not run.

        `old_string` must match exactly (whitespace included) and occur once, unless `replace_all`;
        otherwise nothing changes and the error says whether it was absent or ambiguous. Prefer this
        to overwrite_cell_source for small changes to long cells.
        """
        session = await get_session(ctx)
        ref, diff, count = await session.edit_source(
            cell_index, old_string, new_string, replace_all=replace_all, cell_id=cell_id
        )
        text = f"Replaced {count} occurrence(s) in {_ref_name(ref)}.\n{diff}"
        return _text(text, _ref_dict(ref) | {"replacements": count, "diff": diff})

    @tool
    async def move_cell(
        ctx: Context, source_index: int | None = None, target_index: int = -1, source_cell_id: str | None = None
    ) -> CallToolResult:
        """Move a cell (by `source_index` or `source_cell_id`) so that it ends up at `target_index`.

        -1 moves it to the end. The cell keeps its id, source and outputs; the cells between shift.
        """
        session = await get_session(ctx)
        before, after = await session.move_cell(source_index, target_index, cell_id=source_cell_id)
        text = f"Moved {before.cell_type} {_ref_name(after)} from index {before.index} to {after.index}."
        return _text(text, {"cell_id": after.id, "from_index": before.index, "cell_index": after.index})

    @tool
    async def clear_cell_output(
        ctx: Context, cell_index: int | None = None, cell_id: str | None = None
    ) -> CallToolResult:
        """Remove the outputs and execution count of one code cell (by `cell_index` or `cell_id`)."""
        session = await get_session(ctx)
        ref, removed = await session.clear_outputs(cell_index, cell_id=cell_id)
        return _text(f"Cleared {removed} output(s) of {_ref_name(ref)}.", _ref_dict(ref) | {"removed": removed})

    @tool
    async def clear_all_outputs(ctx: Context) -> CallToolResult:
        """Remove the outputs and execution counts of every code cell in the notebook."""
        session = await get_session(ctx)
        cleared = await session.clear_all_outputs()
        return _text(f"Cleared the outputs of {cleared} cell(s).", {"cells_cleared": cleared})

    # -- running ----------------------------------------------------------------------------------

    @tool
    async def execute_cell(
        ctx: Context,
        cell_index: int | None = None,
        cell_id: str | None = None,
        timeout_seconds: float | None = None,
    ) -> CallToolResult:
        """Run the code cell at `cell_index` (or with `cell_id`); returns its outputs, also saved in the cell.

        Sends progress notifications every second (elapsed time, latest output line). After
        `timeout_seconds` (default: the server's --timeout) the kernel is interrupted and the partial
        outputs are returned. An exception in the code is a normal result with the traceback.
        """
        session = await get_session(ctx)
        return await run(ctx, session, cell_index, cell_id, timeout_seconds or default_timeout, PROGRESS_INTERVAL)

    @tool
    async def execute_code(code: str, ctx: Context, timeout_seconds: float | None = None) -> CallToolResult:
        """Run code in the notebook's kernel without adding a cell; nothing is saved in the notebook.

        For scratch work: checks, `%pip install`, looking at a variable. Variables it defines stay in
        the kernel. Sends progress notifications; interrupted after `timeout_seconds` (default: the
        server's --timeout). Use a cell instead for anything the notebook should keep.
        """
        session = await get_session(ctx)
        timeout = timeout_seconds or default_timeout
        res = await session.execute_code(code, timeout=timeout, on_progress=progress_reporter(ctx, timeout))
        parts = render_outputs(res.outputs, max_chars=max_output_chars, max_image_bytes=max_image_bytes)
        lines = [_result_head(res, "code", counted=False)] + ([f"Note: {res.note}"] if res.note else [])
        if not parts:
            lines.append("(no output)")
        structured = {"status": res.status, "elapsed_seconds": round(res.elapsed, 3), "saved": False}
        content = [TextContent(type="text", text="\n".join(lines)), *_content(parts)]
        return CallToolResult(content=content, structured_content=structured)

    @tool
    async def interrupt_kernel(ctx: Context) -> CallToolResult:
        """Interrupt the code the kernel is running (like Ctrl+C); its variables are kept."""
        session = await get_session(ctx)
        was_busy = await session.interrupt()
        text = (
            "Interrupted the running code."
            if was_busy
            else "The kernel was not running anything; sent the interrupt anyway."
        )
        return _text(text, {"was_running": was_busy})

    @tool
    async def restart_kernel(ctx: Context) -> CallToolResult:
        """Restart the kernel: every variable and import is lost; the notebook and its outputs are kept."""
        session = await get_session(ctx)
        await session.restart_kernel()
        info = await session.info()
        return _text(
            f"Restarted the kernel ({info['kernel'].get('name')}); it is {info['kernel']['state']}.", info["kernel"]
        )

    if workspace is None:
        return exposed - set(WORKSPACE_TOOLS)
    ws = workspace

    def _listed(path: Any) -> str:
        from .paths import relative_name

        return relative_name(ws.root, path)

    @tool
    async def list_notebooks(ctx: Context) -> CallToolResult:
        """List the notebooks this server can work on: path, cell count, kernel state, which is active.

        Paths are relative to the served folder; pass one to use_notebook, or as notebook_path to any
        notebook tool. Notebooks that are not open show their kernel as "not started".
        """
        paths, cut = await anyio.to_thread.run_sync(ws.list_paths)
        active = ws.active_path(ctx)
        rows = []
        for path in paths:
            host = ws.hosts.get(path)
            row: dict[str, Any] = {"path": _listed(path), "active": path == active, "open": host is not None}
            if host is not None:
                health = await host.health()
                row["cells"] = health.get("cells")
                row["kernel"] = health["kernel"]
            else:
                row["kernel"] = "not started"
            rows.append(row)
        lines = [f"{len(rows)} notebook(s) under {ws.root}" + (" (list cut; more exist)" if cut else "")]
        for row in rows:
            flags = " [active]" if row["active"] else ""
            cells = f", {row['cells']} cells" if row.get("cells") is not None else ""
            lines.append(f"- {row['path']}{flags} (kernel {row['kernel']}{cells})")
        return CallToolResult(
            content=[TextContent(type="text", text="\n".join(lines))],
            structured_content={"root": str(ws.root), "notebooks": rows, "truncated": cut},
        )

    @tool
    async def use_notebook(path: str, ctx: Context, create: bool = False) -> CallToolResult:
        """Make the notebook at `path` (relative to the served folder) the one your calls work on.

        Its kernel starts in the background. With create=true a missing notebook is created (empty).
        The choice belongs to your MCP session only: other clients keep their own notebook.
        """
        host = await ws.use(ctx, path, create=create)
        info = await host.session.info()
        text = f"Now working on {_listed(host.session.path)} ({info['total_cells']} cells)."
        return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=info)

    @tool
    async def unuse_notebook(path: str, ctx: Context) -> CallToolResult:
        """Close the notebook at `path`: shut its kernel down (its variables are lost) and stop watching it.

        The file is not touched. Use it for notebooks you are done with, to free memory.
        """
        target = ws.resolve(path)
        closed = await ws.close(target)
        text = f"Closed {_listed(target)}; its kernel was shut down." if closed else f"{path} was not open."
        return CallToolResult(content=[TextContent(type="text", text=text)], structured_content={"closed": closed})

    return exposed
