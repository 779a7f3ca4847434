"""One rule for every tool answer: the whole answer is one text, within the budget, the same in either view.

Every tool answers with one `Answer`: its `text` is the whole answer as the model should read it
(outputs, tracebacks, ids, notes, what was cut and which call returns the rest), cut to the output
budget. By default the result is plain `content`: that text, then the images as image blocks, with no
outputSchema and no structuredContent. Measured in real clients (issue 23): Claude Code shows the
model `structuredContent` as escaped JSON when there is one, Codex shows only `structuredContent` and
drops the images, Gemini CLI and OpenCode show `content`; so plain content serves every model best.
With --structured-output the answer model is also the tool's outputSchema and the result carries it as
structuredContent (the same `text` beside a few small facts: ids, status, counts) for programs.

Anything an answer leaves out is named in its first line with the call that returns it, besides the
marker in place: a client that cuts a long answer in the middle must not hide how to get the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mcp.types import CallToolResult, ContentBlock, ImageContent, TextContent
from pydantic import BaseModel, ConfigDict, Field

from ..render import ImagePart, truncate_middle

__all__ = [
    "ANSWER_OVERHEAD",
    "CELL_OUTPUT_CHARS",
    "Answer",
    "CellAnswer",
    "ClearAllAnswer",
    "ExecutionAnswer",
    "ExecutionsAnswer",
    "HistoryAnswer",
    "ImageInfo",
    "InfoAnswer",
    "KernelAnswer",
    "NotebooksAnswer",
    "OutputPageAnswer",
    "PageAnswer",
    "ReadCellAnswer",
    "RunAllAnswer",
    "VariablesAnswer",
    "address",
    "cell_name",
    "fit",
    "image_infos",
    "left_out",
    "reply",
    "with_note",
]

#: Characters an answer may have beyond --max-output-chars: headers, notes and cut markers around the
#: budgeted outputs. Every answer, in both views, stays within budget + this.
ANSWER_OVERHEAD = 2_000
#: Output characters shown per cell when one answer shows several cells (read_all_cells, detailed
#: read_notebook, execute_all_cells); read_cell and single executions get the whole budget.
CELL_OUTPUT_CHARS = 2_000
#: Room kept in the structured view for the fields beside `text` (ids, status, image list).
_FIELDS_RESERVE = 1_000
#: Things left out that the first line names one by one (with their calls); the others are counted.
LEFT_OUT_NAMED = 3
#: The most that first line takes (it comes out of the room the answer has beyond the output budget).
LEFT_OUT_CHARS = 800


#: The answer models build their validators on first use, not when the server starts (issue 23: 15 models,
#: about 9 ms before `tools/list`, used only once a tool answers, or for --structured-output's schemas).
_DEFERRED = ConfigDict(defer_build=True)


class ImageInfo(BaseModel):
    """An image output: shown as image content in this answer, or named so that it can be fetched."""

    model_config = _DEFERRED
    output_index: int
    mime_type: str
    bytes: int
    cell_index: int | None = None
    cell_id: str | None = None


class Answer(BaseModel):
    """What every tool answers."""

    model_config = _DEFERRED
    text: str = Field(description="The whole answer as the model should read it; the same text as the content.")
    images: list[ImageInfo] = Field(
        default_factory=list, description="Images shown as image content in this answer (not in this JSON)."
    )


class CellAnswer(Answer):
    """An edit of one cell."""

    cell_index: int | None = None
    cell_id: str | None = None
    cell_type: str | None = None
    from_index: int | None = None
    replacements: int | None = None
    removed_outputs: int | None = None


class ClearAllAnswer(Answer):
    cells_cleared: int


class ExecutionAnswer(Answer):
    """A run of one cell or of scratch code."""

    cell_index: int | None = None
    cell_id: str | None = None
    status: str = Field(
        description="ok, error, timeout, dead (the kernel died), interrupted, or running (see execution_id)"
    )
    execution_count: int | None = None
    elapsed_seconds: float
    saved: bool = Field(description="Whether the outputs were saved in the notebook")
    execution_id: str | None = Field(
        default=None, description="Names this execution for wait_for_execution while it runs and after"
    )
    running: bool = Field(
        default=False, description="Still running after --max-wait: wait_for_execution(execution_id) waits for more"
    )


class ExecutionsAnswer(Answer):
    """The running execution and the recently finished ones."""

    running_execution_id: str | None = None
    count: int


class RunAllAnswer(Answer):
    """A run of many cells."""

    status: str
    ran: int
    total: int
    elapsed_seconds: float
    failed_cell_index: int | None = None
    failed_cell_id: str | None = None


class ReadCellAnswer(Answer):
    cell_index: int
    cell_id: str | None
    cell_type: str
    execution_count: int | None
    outputs: int = Field(description="Number of outputs the cell has")
    source_chars: int
    next_source_offset: int | None = Field(
        description="Where the rest of a cut source starts (read_cell source_offset)"
    )


class PageAnswer(Answer):
    """Several cells, whole, in order, as many as fit in the budget."""

    total_cells: int
    start_index: int
    end_index: int | None = Field(description="The last cell shown (inclusive); null when none")
    next_start_index: int | None = Field(description="Where the next page starts; null after the last cell")
    response_format: str


class OutputPageAnswer(Answer):
    cell_index: int
    cell_id: str | None
    output_index: int
    offset: int
    next_offset: int | None
    total_chars: int


class InfoAnswer(Answer):
    """The notebook's facts; more keys may appear as nbmcp learns more."""

    model_config = ConfigDict(extra="allow", defer_build=True)

    path: str
    total_cells: int
    kernel: dict[str, Any]


class VariablesAnswer(Answer):
    total: int
    shown: int


class KernelAnswer(Answer):
    state: str | None = None
    was_running: bool | None = None
    interpreter: str | None = Field(default=None, description="The program that runs the code (restart_kernel)")


class HistoryAnswer(Answer):
    """The undo journal's answers."""

    total: int = Field(description="Changes recorded (that undo can still take back)")
    undone: int | None = None
    total_cells: int | None = None


class NotebooksAnswer(Answer):
    """The workspace tools' answers."""

    root: str | None = None
    path: str | None = None
    count: int | None = None
    truncated: bool | None = None
    closed: bool | None = None


def cell_name(index: int, cell_id: str | None) -> str:
    return f"cell {index} (id {cell_id})" if cell_id else f"cell {index} (no id: nbformat 4.4 notebook)"


def address(index: int, cell_id: str | None) -> str:
    """How a call should name the cell: by id when it has one, since ids survive edits."""
    return f"cell_id={cell_id!r}" if cell_id else f"cell_index={index}"


def fit(text: str, limit: int) -> str:
    """`text` cut in the middle to at most `limit` characters (and a marker).

    Answers are built to fit already (outputs, sources and listings each within their share); this
    is the guarantee for the whole, should headers and notes add up. The budget counts characters
    the model reads: a newline is one, however a transport escapes it.
    """
    if len(text) <= limit:
        return text
    return truncate_middle(text, max(limit - 200, 0), "the answer was over the output budget (--max-output-chars)")


def left_out(cuts: Sequence[str]) -> str:
    """The first line of an answer that leaves something out: what, and the call that returns each."""
    if not cuts:
        return ""
    line = "Left out of this answer: " + "; ".join(cuts[:LEFT_OUT_NAMED])
    if len(cuts) > LEFT_OUT_NAMED:
        line += f"; and {len(cuts) - LEFT_OUT_NAMED} more, each marked [...] where it was"
    if len(line) > LEFT_OUT_CHARS:  # only with absurdly long cell ids: the markers in place stay exact
        line = line[: LEFT_OUT_CHARS - 40] + " ... (see the markers below)"
    return line + "."


def reply(
    answer: Answer, images: Sequence[ImagePart], limit: int, *, cuts: Sequence[str] = (), structured: bool = False
) -> CallToolResult:
    """The tool result of `answer`: content (text, then images), and with `structured` the answer model too.

    `cuts` name what the text leaves out; the first line says so. The text is the same either way and
    within `limit` in either view.
    """
    cuts = list(cuts)
    room = limit - _FIELDS_RESERVE
    if len(answer.text) + len(left_out(cuts)) + 1 > room:
        cuts.append("the middle of this answer, over the output budget (--max-output-chars): ask for less at a time")
        answer.text = fit(answer.text, room - len(left_out(cuts)) - 1)
    if cuts:
        answer.text = left_out(cuts) + "\n" + answer.text
    content: list[ContentBlock] = [TextContent(type="text", text=answer.text)]
    content += [ImageContent(type="image", data=i.data, mime_type=i.mime_type) for i in images]
    return CallToolResult(content=content, structured_content=answer.model_dump(mode="json") if structured else None)


def with_note(result: CallToolResult, note: str) -> CallToolResult:
    """`result` with "Note: `note`" as the last line of its text (in the structured view too, if any)."""
    first = result.content[0] if result.content else None
    if isinstance(first, TextContent):
        first.text += f"\nNote: {note}"
        if isinstance(result.structured_content, dict) and "text" in result.structured_content:
            result.structured_content["text"] = first.text
    return result


def image_infos(images: Sequence[ImagePart], index: int | None = None, cell_id: str | None = None) -> list[ImageInfo]:
    return [
        ImageInfo(output_index=i.output_index, mime_type=i.mime_type, bytes=i.size, cell_index=index, cell_id=cell_id)
        for i in images
    ]
