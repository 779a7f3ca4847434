"""What the model sees: every tool answers the same facts in `content` and in `structuredContent`,
each within the output budget, whatever the notebook holds (issue 11).

Some clients show the model only `content`; others (Codex) only `structuredContent`. nbmcp answers
plain content by default (tests/test_client_views.py); these tests run its --structured-output mode,
read each answer through both views and check both.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import nbformat
import pytest
from mcp import Client

from nbmcp.config import Settings
from nbmcp.server.app import build_server
from nbmcp.server.render import MAX_OUTPUT_CHARS
from nbmcp.server.tools import ALL_TOOLS, ANSWER_OVERHEAD, WORKSPACE_TOOLS

from .conftest import read_nb

pytestmark = pytest.mark.anyio

#: What either view of one answer may hold at most (characters of text / of JSON).
LIMIT = MAX_OUTPUT_CHARS + ANSWER_OVERHEAD


def content_view(result: Any) -> str:
    """What a client that shows only `content` gives the model (an image as a placeholder)."""
    parts = []
    for block in result.content:
        parts.append(block.text if block.type == "text" else f"<{block.type} {block.mime_type}>")
    return "\n".join(parts)


def structured_view(result: Any) -> str:
    """What a client that shows only `structuredContent` gives the model: the JSON."""
    assert result.structured_content is not None, "every nbmcp tool answers a structured view"
    return json.dumps(result.structured_content, ensure_ascii=False)


def views(result: Any, *facts: str) -> tuple[str, str]:
    """Both views, checked: within the budget, and each fact present in both."""
    content, structured = content_view(result), structured_view(result)
    text_chars = sum(len(b.text) for b in result.content if b.type == "text")
    assert text_chars <= LIMIT, f"content view has {text_chars} characters"
    # Characters the model reads: the text (a newline is one character, escaped or not) and the
    # JSON of the other fields.
    fields = {k: v for k, v in result.structured_content.items() if k != "text"}
    structured_chars = len(result.structured_content["text"]) + len(json.dumps(fields))
    assert structured_chars <= LIMIT, f"structured view has {structured_chars} characters"
    for fact in facts:
        assert fact in content, f"{fact!r} missing from the content view"
        assert fact in structured or json.dumps(fact)[1:-1] in structured, f"{fact!r} missing from the structured view"
    return content, structured


async def ok(client: Client, tool: str, *facts: str, **args: object) -> Any:
    result = await client.call_tool(tool, args)
    assert not result.is_error, content_view(result)
    views(result, *facts)
    return result


async def error(client: Client, tool: str, **args: object) -> str:
    result = await client.call_tool(tool, args)
    assert result.is_error, content_view(result)
    message = content_view(result)
    assert message.strip() and not re.fullmatch(r"Error executing tool \w+:?\s*", message), message
    return message


@pytest.fixture
def client(structured_client: Client) -> Client:
    """Both views exist only with --structured-output."""
    return structured_client


@pytest.fixture
async def folder_client(tmp_path: Path) -> Any:
    server = build_server(Settings(path=tmp_path / "work", timeout=60, structured_output=True))
    async with Client(server) as c:
        yield c


def write_nb(path: Path, cells: list[Any]) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = cells
    nbformat.write(nb, path)
    return path


async def test_every_tool_answers_both_views_with_the_same_facts(client: Client, nb_path: Path) -> None:
    seen: set[str] = set()

    async def run(tool: str, *facts: str, **args: object) -> Any:
        seen.add(tool)
        return await ok(client, tool, *facts, **args)

    r = await run("append_markdown_cell", "cell 0", cell_source="# Title")
    md_id = r.structured_content["cell_id"]
    assert md_id in content_view(r)
    await run("insert_markdown_cell", "cell 1", cell_index=1, cell_source="intro")
    r = await run("append_execute_code_cell", "hello", "execution_count 1", cell_source="print('hello')")
    code_id = r.structured_content["cell_id"]
    await run("insert_execute_code_cell", "84", cell_index=3, cell_source="42 * 2")
    await run("insert_cell", "Inserted code", cell_index=-1, cell_type="code", cell_source="x = 1")
    await run("overwrite_cell_source", "-x = 1", "+x = 2", cell_index=4, cell_source="x = 2")
    await run("edit_cell_source", "Replaced 1", "+x = 3", cell_index=4, old_string="2", new_string="3")
    await run("execute_cell_simple_timeout", "execution_count", cell_index=4)
    await run("execute_cell_streaming", "execution_count", cell_index=4, progress_interval=1)
    await run("execute_cell_with_progress", "execution_count", cell_index=4)
    await run("execute_cell", "hello", cell_id=code_id)
    await run("execute_code", "ZeroDivisionError", "division by zero", code="1/0")
    r = await run("execute_code", "42", code="6*7")
    execution_id = r.structured_content["execution_id"]
    assert execution_id in content_view(r) and r.structured_content["running"] is False
    await run("wait_for_execution", "42", execution_id, execution_id=execution_id)
    await run("list_executions", execution_id, "finished (ok)")
    await run("execute_all_cells", "Ran 3 of 3", "hello", "84")
    await run("read_cell", "print('hello')", "hello", code_id, cell_id=code_id)
    await run("read_all_cells", "# Title", "intro", "hello", "84", md_id)
    await run("read_notebook", "# Title", md_id, "Last page")
    await run("read_notebook", "print('hello')", "hello", response_format="detailed")
    await run("read_cell_output", "hello", cell_id=code_id)
    await run("get_notebook_info", str(nb_path), "total_cells")
    await run("list_variables", "x: int", "1 variable")
    await run("move_cell", "from index 4 to 0", source_index=4, target_index=0)
    await run("clear_cell_output", "Cleared 1 output", cell_id=code_id)
    await run("clear_all_outputs", "Cleared the outputs")
    await run("delete_cell", "Deleted markdown", "intro", cell_index=2)
    await run("list_changes", "recorded change(s), newest first", "1. [")
    await run("undo", "Took back 1 change(s)", "older change(s) can still be undone")
    await run("interrupt_kernel", "not running anything")
    await run("restart_kernel", "Restarted the kernel", "idle")
    assert seen == set(ALL_TOOLS) - set(WORKSPACE_TOOLS)
    assert len(read_nb(nb_path).cells) == 5  # the deleted cell is back


async def test_workspace_tools_answer_both_views(folder_client: Client, tmp_path: Path) -> None:
    write_nb(tmp_path / "work" / "a.ipynb", [nbformat.v4.new_markdown_cell("a")])
    await ok(folder_client, "list_notebooks", "a.ipynb", "kernel not started")
    await ok(folder_client, "use_notebook", "a.ipynb", "1 cells", path="a.ipynb")
    await ok(folder_client, "list_notebooks", "a.ipynb [active]")
    await ok(folder_client, "unuse_notebook", "Closed a.ipynb", path="a.ipynb")


async def test_a_200k_print_is_cut_in_both_views_and_the_rest_is_one_call_away(client: Client) -> None:
    r = await ok(
        client, "append_execute_code_cell", "characters omitted", cell_source="print('a' * 100_000 + 'b' * 100_000)"
    )
    text = r.structured_content["text"]
    call = re.search(r"read_cell_output\(cell_id='([^']+)', output_index=0, offset=(\d+)\)", text)
    assert call is not None, text
    cell_id, offset = call.group(1), int(call.group(2))
    page = await ok(client, "read_cell_output", cell_id=cell_id, output_index=0, offset=offset)
    sc = page.structured_content
    assert sc["offset"] == offset and sc["total_chars"] == 200_001 and sc["next_offset"] == offset + MAX_OUTPUT_CHARS
    # The first line names the same call; the head line follows; the page continues exactly where the
    # shown head of the output stopped.
    first, _head, shown = text.split("\n")[:3]
    assert first.startswith("Left out of this answer: ") and call.group(0) in first
    assert shown.rstrip("a") == "" and len(shown) == offset


@pytest.mark.timeout(300)
async def test_ten_thousand_displays_stay_within_the_budget(client: Client) -> None:
    code = "for i in range(10_000):\n    display(f'item {i}')"
    cell = await ok(client, "insert_cell", cell_index=-1, cell_type="code", cell_source=code)
    # 10,000 iopub messages take ipykernel itself some seconds: a generous timeout for a busy machine.
    r = await ok(
        client,
        "execute_cell",
        "outputs ",
        "omitted",
        cell_index=cell.structured_content["cell_index"],
        timeout_seconds=240,
    )
    content, _ = views(r)
    assert r.structured_content["status"] == "ok"
    assert "'item 0'" in content and "'item 9999'" in content
    assert content.count("omitted") == 1
    r = await ok(client, "read_cell", "'item 9999'", "omitted", cell_index=0)
    r = await ok(client, "read_all_cells", "'item 0'", "omitted")


async def test_a_2000_cell_notebook_reads_whole_cells_until_the_budget(tmp_path: Path) -> None:
    cells = [nbformat.v4.new_code_cell(f"value_{i} = {i}\nprint(value_{i})") for i in range(2000)]
    for i, cell in enumerate(cells):
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"{i}\n")]
        cell.execution_count = i + 1
    path = write_nb(tmp_path / "work" / "big.ipynb", cells)
    async with Client(
        build_server(Settings(path=path, timeout=60, kernel_at_open=False, structured_output=True))
    ) as client:
        r = await ok(client, "read_all_cells", "of 2000", "read_notebook(start_index=")
        sc = r.structured_content
        assert (
            sc["total_cells"] == 2000 and 0 < sc["end_index"] < 1999 and sc["next_start_index"] == sc["end_index"] + 1
        )
        # Whole cells, in order: the last one shown has its source and output.
        last = sc["end_index"]
        assert f"value_{last} = {last}\nprint(value_{last})\nOutputs:\n{last}" in sc["text"]
        r = await ok(client, "read_notebook", "Next page: read_notebook(start_index=", start_index=0, limit=500)
        brief = r.structured_content
        assert brief["next_start_index"] == brief["end_index"] + 1 <= 500
        assert f"start_index={brief['next_start_index']}," in brief["text"]
        r = await ok(client, "read_notebook", "Last page", start_index=1990, limit=500)
        assert r.structured_content["end_index"] == 1999 and r.structured_content["next_start_index"] is None


async def test_a_10_mb_source_is_paged_not_sent(tmp_path: Path) -> None:
    source = "".join(f"line_{i} = {i}\n" for i in range(700_000))[:10_000_000]
    path = write_nb(tmp_path / "work" / "huge.ipynb", [nbformat.v4.new_code_cell(source)])
    async with Client(
        build_server(Settings(path=path, timeout=60, kernel_at_open=False, structured_output=True))
    ) as client:
        r = await ok(client, "read_cell", "source continues", "source_offset=", cell_index=0)
        sc = r.structured_content
        assert sc["source_chars"] == len(source) and sc["next_source_offset"] == MAX_OUTPUT_CHARS
        r = await ok(client, "read_cell", cell_index=0, source_offset=sc["next_source_offset"])
        assert source[MAX_OUTPUT_CHARS : MAX_OUTPUT_CHARS + 100] in r.structured_content["text"]
        await ok(client, "read_all_cells", "source continues")
        await ok(client, "read_notebook", "line_0 = 0", response_format="detailed")
        await ok(client, "edit_cell_source", "Replaced 1", cell_index=0, old_string="line_5 = 5\n", new_string="five\n")
        await ok(client, "overwrite_cell_source", "characters omitted", cell_index=0, cell_source="small = 1")
        await ok(client, "overwrite_cell_source", "+small = 2", cell_index=0, cell_source="small = 2")


async def test_images_are_content_and_named_in_the_structured_view(client: Client) -> None:
    code = (
        "import base64\nfrom IPython.display import Image, display\n"
        "png = base64.b64decode("
        "'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==')\n"
        "display(Image(data=png))"
    )
    r = await ok(client, "append_execute_code_cell", "image/png image of", "shown as image content", cell_source=code)
    assert [b.type for b in r.content] == ["text", "image"]
    assert r.structured_content["images"] == [
        {
            "output_index": 0,
            "mime_type": "image/png",
            "bytes": 70,
            "cell_index": 0,
            "cell_id": r.structured_content["cell_id"],
        }
    ]
    r = await ok(client, "read_cell", "shown as image content", cell_index=0)
    assert [b.type for b in r.content] == ["text", "image"] and r.structured_content["images"]


@pytest.mark.parametrize(
    "tool, args, says",
    [
        ("execute_code", {"code": "1", "timeout_seconds": -5}, "timeout_seconds must be a positive number"),
        ("execute_code", {"code": "1", "timeout_seconds": 0}, "timeout_seconds must be a positive number"),
        ("execute_cell", {"cell_index": 0, "timeout_seconds": 0}, "timeout_seconds must be a positive number"),
        ("execute_cell_simple_timeout", {"cell_index": 0, "timeout_seconds": -1}, "positive"),
        ("read_cell", {"cell_index": True}, "valid integer"),
        ("delete_cell", {"cell_index": True}, "valid integer"),
        ("move_cell", {"target_index": 0}, "give either source_index or source_cell_id"),
        ("read_cell", {"cell_index": 0, "source_offset": 99}, "source_offset 99 is out of range"),
        ("read_cell_output", {"cell_index": 0, "max_chars": 0}, "max_chars must be positive"),
        ("read_notebook", {"limit": 0}, "limit must be between 1 and 500"),
    ],
)
async def test_bad_arguments_say_what_is_valid_and_change_nothing(
    client: Client, nb_path: Path, tool: str, args: dict[str, object], says: str
) -> None:
    await ok(client, "append_markdown_cell", cell_source="a")
    before = nb_path.read_bytes()
    message = await error(client, tool, **args)
    assert says in message, message
    assert "cell_id)" not in message or tool != "move_cell"
    assert nb_path.read_bytes() == before


async def test_unexpected_failures_name_what_went_wrong(folder_client: Client, tmp_path: Path) -> None:
    (tmp_path / "work" / "folder.ipynb").mkdir()
    message = await error(folder_client, "read_cell", cell_index=0, notebook_path="folder.ipynb")
    assert "folder.ipynb" in message
    message = await error(folder_client, "read_cell", cell_index=0, notebook_path="a" * 100_000 + ".ipynb")
    assert len(message) < 2_000 and ("too long" in message.lower() or "no notebook" in message), message
    deep = tmp_path / "work" / "deep.ipynb"
    deep.write_text('{"nbformat": 4, "cells": ' + "[" * 100_000 + "]" * 100_000 + "}")
    message = await error(folder_client, "read_cell", cell_index=0, notebook_path="deep.ipynb")
    assert "nested too deeply" in message, message
