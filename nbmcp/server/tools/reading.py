"""Tools that read the notebook: one cell, pages of cells, one output in pages, the notebook's facts.

Every answer fits the output budget whatever the notebook holds: whole cells in order until the
budget is used, then the call that continues; long sources and outputs cut with a marker naming the
call that returns the rest. Building an answer touches only the cells it shows.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal
from urllib.parse import quote

from mcp.server.mcpserver import Context
from mcp.types import CallToolResult

from ...errors import UsageError
from ...kernels.outputs import output_text
from ...session.results import CellView
from ..render import ImageBudget, ImagePart, page_text, render
from .answers import (
    CELL_OUTPUT_CHARS,
    InfoAnswer,
    OutputPageAnswer,
    PageAnswer,
    ReadCellAnswer,
    address,
    cell_name,
    image_infos,
)
from .cells import first_line
from .registry import CellIndex, Count, tool, toolbox

__all__ = [
    "CELL_SOURCE_CHARS",
    "MAX_READ_LIMIT",
    "READ_NOTEBOOK_LIMIT",
    "get_notebook_info",
    "read_all_cells",
    "read_cell",
    "read_cell_output",
    "read_notebook",
]

#: Cells per read_notebook page by default, and at most.
READ_NOTEBOOK_LIMIT = 50
MAX_READ_LIMIT = 500
#: Source characters shown per cell when several cells are shown (read_cell shows more).
CELL_SOURCE_CHARS = 4_000
#: Cells read from the notebook at a time while filling a page (a page stops when the budget is used).
_CHUNK = 100

Page = Annotated[CallToolResult, PageAnswer]


def _source_window(view: CellView, offset: int, limit: int, cuts: list[str]) -> tuple[str, int | None]:
    """The source from `offset`, at most `limit` characters, and where the rest starts (None: the end).

    A cut source is named in `cuts` with the call that returns the rest.
    """
    source = view.source
    if offset < 0 or offset > len(source):
        raise UsageError(
            f"source_offset {offset} is out of range; {cell_name(view.index, view.id)} has {len(source)} "
            f"source characters (valid: 0 to {len(source)})"
        )
    end = min(offset + limit, len(source))
    shown = source[offset:end]
    if offset > 0:
        shown = f"[source from character {offset} of {len(source)}]\n{shown}"
    if end == len(source):
        return shown, None
    call = f"read_cell({address(view.index, view.id)}, source_offset={end})"
    rest = f"\n[... source continues: characters {end} to {len(source)} not shown; {call} returns them ...]"
    cuts.append(f"source characters {end} to {len(source)} of {cell_name(view.index, view.id)}: {call} returns them")
    return shown + rest, end


def _cell_head(view: CellView) -> str:
    head = f"--- {cell_name(view.index, view.id)} [{view.cell_type}]"
    if view.cell_type == "code":
        head += f" execution_count={view.execution_count}"
    return head


def _cell_block(view: CellView, images: ImageBudget, cuts: list[str]) -> str:
    """A cell as read_all_cells and detailed read_notebook show it: bounded whatever the cell holds.

    What it leaves out goes into `cuts`.
    """
    source, _ = _source_window(view, 0, CELL_SOURCE_CHARS, cuts)
    lines = [_cell_head(view), source]
    if view.outputs:
        box = toolbox()
        shown = render(
            view.outputs,
            max_chars=CELL_OUTPUT_CHARS,
            max_image_bytes=box.max_image_bytes,
            cell=address(view.index, view.id),
            images=images,
        )
        lines += ["Outputs:", shown.text]
        cuts += shown.cuts
    return "\n".join(lines)


def _brief_line(view: CellView) -> str:
    line = f"{view.index:>4} {view.id or '-'} {view.cell_type}"
    if view.cell_type == "code":
        line += f" [{view.execution_count if view.execution_count is not None else ' '}]"
        if view.outputs:
            line += f" ({len(view.outputs)} output{'s' if len(view.outputs) > 1 else ''})"
    return f"{line}: {first_line(view.source)}"


async def _page(ctx: Context, start: int, limit: int | None, response_format: str) -> CallToolResult:
    """Cells from `start`, whole and in order, until `limit` cells or the budget is reached."""
    box = toolbox()
    session = await box.session(ctx)
    budget = box.max_output_chars
    images = ImageBudget(0, reason="pages of cells show no images")
    blocks: list[str] = []
    cuts: list[str] = []
    used = 0
    end: int | None = None
    views, total = await session.read_page(start, min(_CHUNK, limit or _CHUNK))
    while views:
        for view in views:
            block_cuts: list[str] = []
            block = _brief_line(view) if response_format == "brief" else _cell_block(view, images, block_cuts)
            if blocks and used + len(block) + 2 > budget:
                views = []
                break
            blocks.append(block)
            cuts += block_cuts
            used += len(block) + 2
            end = view.index
            if limit is not None and len(blocks) >= limit:
                views = []
                break
        else:
            nxt = views[-1].index + 1
            want = _CHUNK if limit is None else min(_CHUNK, limit - len(blocks))
            views = (await session.read_page(nxt, want))[0] if nxt < total and want > 0 else []
    next_start = end + 1 if end is not None and end + 1 < total else None
    if end is None:
        head = "The notebook has no cells."
    else:
        head = f"Cells {start} to {end} of {total} ({response_format})."
        if next_start is None:
            head += " Last page."
        else:
            head += f" Next page: read_notebook(start_index={next_start}, response_format={response_format!r})."
    if cuts and next_start is not None:
        # The head names the next page, but the first line is now what was left out: it names it too.
        page = f"read_notebook(start_index={next_start}, response_format={response_format!r})"
        cuts.insert(0, f"cells {next_start} to {total - 1}: {page} returns them")
    separator = "\n" if response_format == "brief" else "\n\n"
    answer = PageAnswer(
        text=head + ("\n" + separator.join(blocks) if blocks else ""),
        total_cells=total,
        start_index=start,
        end_index=end,
        next_start_index=next_start,
        response_format=response_format,
    )
    return box.reply(answer, cuts=cuts)


@tool
async def read_cell(
    ctx: Context, cell_index: CellIndex | None = None, cell_id: str | None = None, source_offset: int = 0
) -> Annotated[CallToolResult, ReadCellAnswer]:
    """Read one cell, by `cell_index` or `cell_id`: index, id, type, source, execution count, outputs.

    Outputs are shown within the output budget (images included); read_cell_output pages through
    an output that was cut. A very long source is cut too, and the answer names the
    `source_offset` that returns the rest.
    """
    box = toolbox()
    session = await box.session(ctx)
    view = await session.read_cell(cell_index, cell_id=cell_id)
    budget = box.max_output_chars
    cuts: list[str] = []
    source, next_offset = _source_window(view, source_offset, budget // 2 if view.outputs else budget, cuts)
    lines = [_cell_head(view)[4:], source]
    shown_images: list[ImagePart] = []
    if view.outputs:
        shown = render(
            view.outputs,
            max_chars=max(budget - len(source), budget // 2),
            max_image_bytes=box.max_image_bytes,
            cell=address(view.index, view.id),
        )
        lines += ["Outputs:", shown.text]
        shown_images = shown.images
        cuts += shown.cuts
    answer = ReadCellAnswer(
        text="\n".join(lines),
        images=image_infos(shown_images, view.index, view.id),
        cell_index=view.index,
        cell_id=view.id,
        cell_type=view.cell_type,
        execution_count=view.execution_count,
        outputs=len(view.outputs),
        source_chars=len(view.source),
        next_source_offset=next_offset,
    )
    return box.reply(answer, shown_images, cuts)


@tool
async def read_all_cells(ctx: Context) -> Page:
    """Read the cells in order: index, id, type, source, execution count and (shortened) text outputs.

    Returns whole cells from the first one until the output budget is used; on a larger notebook
    the answer says how many cells there are and which read_notebook call continues. read_notebook
    gives a one-line-per-cell overview instead; read_cell shows one cell's outputs and images in full.
    """
    return await _page(ctx, 0, None, "detailed")


@tool
async def read_notebook(
    ctx: Context,
    start_index: CellIndex = 0,
    limit: Count = READ_NOTEBOOK_LIMIT,
    response_format: Literal["brief", "detailed"] = "brief",
) -> Page:
    """A page of the notebook's cells: the way to get an overview of a large notebook.

    brief (default): one line per cell with index, id, type, execution count, number of outputs
    and first line. detailed: each cell's source and shortened outputs. Returns at most `limit`
    cells (max 500) from `start_index`, fewer if the output budget is used first; the answer says
    where the next page starts.
    """
    if not 1 <= limit <= MAX_READ_LIMIT:
        raise UsageError(f"limit must be between 1 and {MAX_READ_LIMIT}, not {limit}")
    return await _page(ctx, start_index, limit, response_format)


@tool
async def read_cell_output(
    ctx: Context,
    cell_index: CellIndex | None = None,
    cell_id: str | None = None,
    output_index: Count = 0,
    offset: Count = 0,
    max_chars: Count | None = None,
) -> Annotated[CallToolResult, OutputPageAnswer]:
    """The text of one output of a cell, from character `offset`: the rest of an output that was cut.

    A cut output's marker names the exact call (cell, output_index, offset). Returns at most
    `max_chars` characters (default and maximum: the server's output budget); its first line says
    which characters of how many it shows and the exact call for the rest. An image output is
    returned as image content (within the image cap).
    """
    box = toolbox()
    if max_chars is not None and max_chars <= 0:
        raise UsageError(f"max_chars must be positive, not {max_chars}")
    limit = box.max_output_chars if max_chars is None else min(max_chars, box.max_output_chars)
    session = await box.session(ctx)
    ref, output = await session.read_output(cell_index, output_index, cell_id=cell_id)
    page = page_text(output_text(output), offset, limit)
    shown = render([output], max_chars=limit, max_image_bytes=box.max_image_bytes, cell=address(ref.index, ref.id))
    images = [ImagePart(i.data, i.mime_type, output_index, i.size) for i in shown.images]
    head = f"{cell_name(ref.index, ref.id)}, output {output_index}: characters {page.offset} to "
    head += f"{page.offset + len(page.text)} of {page.total_chars}"
    if page.next_offset is not None:
        # The first line names the exact call for the rest (issue 23: a client's cut must not hide it).
        where = address(ref.index, ref.id)
        head += f"; the rest: read_cell_output({where}, output_index={output_index}, offset={page.next_offset})"
    else:
        head += " (the end)"
    if images:
        head += f"\n[{images[0].mime_type} image of {images[0].size} bytes: shown as image content]"
    answer = OutputPageAnswer(
        text=f"{head}\n{page.text}",
        images=image_infos(images, ref.index, ref.id),
        cell_index=ref.index,
        cell_id=ref.id,
        output_index=output_index,
        offset=page.offset,
        next_offset=page.next_offset,
        total_chars=page.total_chars,
    )
    return box.reply(answer, images)


@tool
async def get_notebook_info(ctx: Context) -> Annotated[CallToolResult, InfoAnswer]:
    """Notebook path, total cell count, counts by cell type, and the kernel's name, state, interpreter."""
    box = toolbox()
    session = await box.session(ctx)
    info = await session.info()
    if box.view_url is not None:
        # Where the person can watch the notebook live (issue 22): a folder's view names the notebook.
        root = box.workspace.root if box.workspace is not None else None
        info["live_view"] = box.view_url + (f"&nb={quote(session.path.relative_to(root).as_posix())}" if root else "")
    return box.reply(InfoAnswer(text=json.dumps(info, indent=1), **info))
