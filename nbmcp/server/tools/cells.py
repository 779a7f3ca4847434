"""Tools that add, change, move and delete cells (nothing here runs code)."""

from __future__ import annotations

from typing import Annotated, Literal

from mcp.server.mcpserver import Context
from mcp.types import CallToolResult

from ...session.results import CellRef
from ..render import truncate_middle
from .answers import CellAnswer, ClearAllAnswer, address, cell_name
from .registry import CellIndex, tool, toolbox

__all__ = [
    "append_markdown_cell",
    "clear_all_outputs",
    "clear_cell_output",
    "delete_cell",
    "edit_cell_source",
    "first_line",
    "insert_cell",
    "insert_markdown_cell",
    "move_cell",
    "overwrite_cell_source",
]

#: Characters of a cell's first line in one-line summaries (brief read_notebook, delete_cell).
BRIEF_LINE_CHARS = 100
Edited = Annotated[CallToolResult, CellAnswer]


def first_line(source: str) -> str:
    stripped = source.strip()
    line = stripped.splitlines()[0] if stripped else "(empty)"
    return line if len(line) <= BRIEF_LINE_CHARS else line[: BRIEF_LINE_CHARS - 3] + "..."


def _ref_name(ref: CellRef) -> str:
    return cell_name(ref.index, ref.id)


def _edited(
    text: str,
    ref: CellRef,
    *,
    from_index: int | None = None,
    replacements: int | None = None,
    removed_outputs: int | None = None,
    cuts: list[str] | None = None,
) -> CallToolResult:
    answer = CellAnswer(
        text=text,
        cell_index=ref.index,
        cell_id=ref.id,
        cell_type=ref.cell_type,
        from_index=from_index,
        replacements=replacements,
        removed_outputs=removed_outputs,
    )
    return toolbox().reply(answer, cuts=cuts or ())


def _diff_text(diff: str, ref: CellRef, cuts: list[str]) -> str:
    """A diff within the budget: a diff of a huge source is cut in the middle, never sent whole."""
    if not diff:
        return "(no change)"
    limit = toolbox().max_output_chars
    if len(diff) > limit:
        cuts.append(
            f"{len(diff) - limit} characters of the diff: read_cell({address(ref.index, ref.id)}) shows the source"
        )
    return truncate_middle(diff, limit, "read_cell shows the cell's source as it is now")


async def _inserted(
    ctx: Context, index: int | None, cell_id: str | None, cell_type: str, source: str
) -> CallToolResult:
    session = await toolbox().session(ctx)
    ref = await session.insert_cell(index, cell_type, source, cell_id=cell_id)
    return _edited(f"Inserted {cell_type} {_ref_name(ref)}.", ref)


@tool
async def append_markdown_cell(cell_source: str, ctx: Context) -> Edited:
    """Add a markdown cell at the end of the notebook.

    Use it for headings, explanations and documentation. Returns the new cell's index and id.
    """
    session = await toolbox().session(ctx)
    ref = await session.insert_cell(-1, "markdown", cell_source)
    return _edited(f"Added markdown {_ref_name(ref)} at the end.", ref)


@tool
async def insert_markdown_cell(
    ctx: Context, cell_index: CellIndex | None = None, *, cell_source: str, cell_id: str | None = None
) -> Edited:
    """Insert a markdown cell before the cell at `cell_index` (0 = top; the cell count or -1 = end).

    Or give `cell_id` instead of `cell_index` to insert before that cell. Cells at and after that
    position shift down by one. Returns the new cell's index and id.
    """
    return await _inserted(ctx, cell_index, cell_id, "markdown", cell_source)


@tool
async def insert_cell(
    ctx: Context,
    cell_index: CellIndex | None = None,
    *,
    cell_type: Literal["code", "markdown", "raw"],
    cell_source: str,
    cell_id: str | None = None,
) -> Edited:
    """Insert a code, markdown or raw cell before `cell_index` (-1 appends) or before the cell `cell_id`.

    The cell is not run (execute_cell runs it). Returns the new cell's index and id.
    """
    return await _inserted(ctx, cell_index, cell_id, cell_type, cell_source)


@tool
async def overwrite_cell_source(
    ctx: Context, cell_index: CellIndex | None = None, *, cell_source: str, cell_id: str | None = None
) -> Edited:
    """Replace the whole source of the cell at `cell_index` or with `cell_id` (outputs kept; not run).

    Returns a unified diff of the change. To change a few lines of a long cell, edit_cell_source
    is safer. Run the cell afterwards with an execute tool if needed.
    """
    session = await toolbox().session(ctx)
    ref, diff = await session.overwrite_source(cell_index, cell_source, cell_id=cell_id)
    cuts: list[str] = []
    return _edited(f"Overwrote the source of {_ref_name(ref)}.\n{_diff_text(diff, ref, cuts)}", ref, cuts=cuts)


@tool
async def edit_cell_source(
    ctx: Context,
    cell_index: CellIndex | None = None,
    *,
    old_string: str,
    new_string: str,
    replace_all: bool = False,
    cell_id: str | None = None,
) -> Edited:
    """Replace exact text inside a cell's source; returns a diff. The cell is not run.

    `old_string` must match exactly (whitespace included) and occur once, unless `replace_all`;
    otherwise nothing changes and the error says whether it was absent or ambiguous. Prefer this
    to overwrite_cell_source for small changes to long cells.
    """
    session = await toolbox().session(ctx)
    ref, diff, count = await session.edit_source(
        cell_index, old_string, new_string, replace_all=replace_all, cell_id=cell_id
    )
    cuts: list[str] = []
    text = f"Replaced {count} occurrence(s) in {_ref_name(ref)}.\n{_diff_text(diff, ref, cuts)}"
    return _edited(text, ref, replacements=count, cuts=cuts)


@tool
async def delete_cell(ctx: Context, cell_index: CellIndex | None = None, cell_id: str | None = None) -> Edited:
    """Delete the cell at `cell_index` (or with `cell_id`); the cells after it shift up by one.

    Returns what was deleted (type, index, id and the start of its source).
    """
    session = await toolbox().session(ctx)
    view = await session.delete_cell(cell_index, cell_id=cell_id)
    ref = CellRef(view.index, view.id, view.cell_type)
    return _edited(f"Deleted {view.cell_type} {_ref_name(ref)}: {first_line(view.source)}", ref)


@tool
async def move_cell(
    ctx: Context,
    source_index: CellIndex | None = None,
    target_index: CellIndex = -1,
    source_cell_id: str | None = None,
) -> Edited:
    """Move a cell (by `source_index` or `source_cell_id`) so that it ends up at `target_index`.

    -1 moves it to the end. The cell keeps its id, source and outputs; the cells between shift.
    """
    session = await toolbox().session(ctx)
    before, after = await session.move_cell(source_index, target_index, cell_id=source_cell_id)
    text = f"Moved {before.cell_type} {_ref_name(after)} from index {before.index} to {after.index}."
    return _edited(text, after, from_index=before.index)


@tool
async def clear_cell_output(ctx: Context, cell_index: CellIndex | None = None, cell_id: str | None = None) -> Edited:
    """Remove the outputs and execution count of one code cell (by `cell_index` or `cell_id`)."""
    session = await toolbox().session(ctx)
    ref, removed = await session.clear_outputs(cell_index, cell_id=cell_id)
    return _edited(f"Cleared {removed} output(s) of {_ref_name(ref)}.", ref, removed_outputs=removed)


@tool
async def clear_all_outputs(ctx: Context) -> Annotated[CallToolResult, ClearAllAnswer]:
    """Remove the outputs and execution counts of every code cell in the notebook."""
    session = await toolbox().session(ctx)
    cleared = await session.clear_all_outputs()
    return toolbox().reply(ClearAllAnswer(text=f"Cleared the outputs of {cleared} cell(s).", cells_cleared=cleared))
