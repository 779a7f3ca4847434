"""Tools over the undo journal: what nbmcp changed in the notebook, and taking it back."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import Context
from mcp.types import CallToolResult

from ...errors import UsageError
from .answers import HistoryAnswer
from .registry import Count, tool, toolbox

__all__ = ["list_changes", "undo"]

History = Annotated[CallToolResult, HistoryAnswer]


@tool
async def undo(ctx: Context, steps: Count = 1, change_id: str | None = None, drop: bool = False) -> History:
    """Take back the last `steps` changes nbmcp made to the notebook, newest first, in one write.

    Undoes inserted, overwritten, edited, deleted and moved cells and cleared outputs, whichever
    client made them (a deleted cell comes back whole: id, metadata, outputs). Outputs written by
    running cells are not undone: after undoing a source change, run the cell again to refresh them.
    If a cell it would restore was changed since by someone else, it refuses and changes nothing;
    the error names the cell. list_changes shows what undo would take back, with each change's id.
    `change_id` takes back just that change, even if newer ones follow it (like git revert).
    `drop=True` with `change_id` forgets that change without touching the notebook: for a change
    list_changes marks "no longer applies", so that older ones can still be undone.
    """
    if steps < 1:
        raise UsageError(f"steps must be at least 1, not {steps}")
    if drop and change_id is None:
        raise UsageError("drop=True needs change_id: the id of the change to forget (list_changes shows the ids)")
    box = toolbox()
    session = await box.session(ctx)
    if drop:
        assert change_id is not None
        dropped = await session.forget_changes([change_id])
        left = len(await session.history())
        text = f"Forgot change {dropped[0].id} ({dropped[0].summary}); the notebook was not changed. "
        text += f"{left} recorded change(s) left."
        return box.reply(HistoryAnswer(text=text, total=left))
    result = await session.undo(steps, change_id)
    lines = [f"Took back {len(result.undone)} change(s), newest first:"]
    lines += [f"{c.step}. [{c.id}] {c.summary}" for c in result.undone]
    lines.append(
        f"The notebook now has {result.total_cells} cells; {result.remaining} "
        f"{'other' if change_id else 'older'} change(s) can still be undone."
    )
    answer = HistoryAnswer(
        text="\n".join(lines),
        total=result.remaining,
        undone=len(result.undone),
        total_cells=result.total_cells,
    )
    return box.reply(answer)


@tool
async def list_changes(ctx: Context, limit: Count = 20) -> History:
    """The changes nbmcp made to the notebook that undo can take back, newest first (step 1).

    One line per change: step, change id, time (UTC), what changed and which cell (index then, and
    id). undo(steps=k) takes back steps 1 to k; undo(change_id=...) one change. A change whose cell was
    deleted or changed since is marked "no longer applies" (undo(change_id=..., drop=True) forgets it).
    Changes made by people or other tools are not listed.
    """
    if limit < 1:
        raise UsageError(f"limit must be at least 1, not {limit}")
    box = toolbox()
    session = await box.session(ctx)
    changes = await session.history()
    if not changes:
        return box.reply(HistoryAnswer(text="No recorded change: there is nothing to undo.", total=0))
    lines = [f"{len(changes)} recorded change(s), newest first:"]
    used = len(lines[0])
    for change in changes[:limit]:
        line = f"{change.step}. [{change.id}] {change.time} {change.summary}"
        if change.stale:
            line += f" (no longer applies: {change.stale})"
        if used + len(line) + 1 > box.max_output_chars:
            lines.append(f"[... older changes not shown; list_changes(limit={change.step - 1}) ...]")
            last = min(limit, len(changes))
            cut = f"changes {change.step} to {last}, older than the ones shown: too many to list in one answer"
            return box.reply(HistoryAnswer(text="\n".join(lines), total=len(changes)), cuts=[cut])
        lines.append(line)
        used += len(line) + 1
    return box.reply(HistoryAnswer(text="\n".join(lines), total=len(changes)))
