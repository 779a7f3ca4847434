"""What a client hands its model (issue 23): plain content by default, the structured view on request.

Measured in real clients: Claude Code shows the model `structuredContent` as escaped JSON when there is
one, Codex shows only `structuredContent` (and drops the images), Gemini CLI and OpenCode show `content`.
So by default no tool lists an outputSchema and no result carries structuredContent: the text, then the
images as image blocks. --structured-output (or NBMCP_STRUCTURED_OUTPUT=1) brings both back for programs,
with the same text. And whatever a client cuts out of a long answer, its first line still names what nbmcp
left out and the call that returns it.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from mcp import Client, StdioServerParameters

from nbmcp.cli.options import add_server_arguments, command_parser, settings_from_args
from nbmcp.config import Settings
from nbmcp.errors import UsageError
from nbmcp.server.app import build_server

from .conftest import text_of

pytestmark = pytest.mark.anyio

#: A 1x1 PNG.
PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"
IMAGE_CELL = (
    "import base64\nfrom IPython.display import Image, display\n"
    f"print('a plot:')\ndisplay(Image(data=base64.b64decode('{PNG_B64}')))"
)
#: A call as the first line names it: read_cell_output(cell_id='...', output_index=N, offset=N).
CALL = re.compile(r"read_cell_output\(cell_id='([^']+)', output_index=(\d+), offset=(\d+)\)")


def _reading_notebook(path: Path) -> Path:
    """A notebook with what reading tools cut or show: an image, a long output, and many cells."""
    nb = nbformat.v4.new_notebook()
    image = nbformat.v4.new_code_cell("show()", execution_count=1)
    image.outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="a plot:\n"),
        nbformat.v4.new_output("display_data", data={"image/png": PNG_B64, "text/plain": "<Image>"}),
    ]
    long = nbformat.v4.new_code_cell("print(long)", execution_count=2)
    long.outputs = [nbformat.v4.new_output("stream", name="stdout", text="".join(f"{i:07d}\n" for i in range(5000)))]
    nb.cells = [image, long] + [nbformat.v4.new_markdown_cell(f"# part {i}\n" + "words " * 500) for i in range(40)]
    nbformat.write(nb, path)
    return path


@pytest.fixture
async def reader(tmp_path: Path) -> AsyncIterator[Client]:
    """A default (plain) server of the reading notebook; --read-only, so no kernel starts."""
    path = _reading_notebook(tmp_path / "work" / "plain.ipynb")
    async with Client(build_server(Settings(path=path, read_only=True))) as client:
        yield client


async def test_default_answers_are_plain_content_with_images_as_blocks(client: Client) -> None:
    tools = (await client.list_tools()).tools
    assert tools and [t.name for t in tools if t.output_schema is not None] == []
    results = [
        await client.call_tool("append_markdown_cell", {"cell_source": "# Title"}),
        await client.call_tool("append_execute_code_cell", {"cell_source": IMAGE_CELL}),
        await client.call_tool("read_cell", {"cell_index": 1}),
        await client.call_tool("read_notebook", {}),
        await client.call_tool("get_notebook_info", {}),
        await client.call_tool("list_executions", {}),
        await client.call_tool("execute_code", {"code": "1/0"}),
        await client.call_tool("read_cell", {"cell_index": 7}),  # an error
    ]
    assert [r.structured_content for r in results] == [None] * len(results)
    ran, read = results[1], results[2]
    for r in (ran, read):
        assert [b.type for b in r.content] == ["text", "image"], r.content
        assert r.content[1].data == PNG_B64 and r.content[1].mime_type == "image/png"
        assert "a plot:" in r.content[0].text and "shown as image content" in r.content[0].text
    traceback, refused = results[-2:]
    assert not traceback.is_error and "ZeroDivisionError" in text_of(traceback)
    # Errors stay isError results with the message as text.
    assert refused.is_error and [b.type for b in refused.content] == ["text"]
    assert "out of range" in text_of(refused) and "valid: 0 to 1" in text_of(refused)


async def test_structured_output_brings_back_schemas_and_fields_with_the_same_text(tmp_path: Path) -> None:
    plain_path = _reading_notebook(tmp_path / "work" / "plain.ipynb")
    structured_path = tmp_path / "work" / "structured.ipynb"
    structured_path.write_bytes(plain_path.read_bytes())  # the same cells, with the same ids
    calls: list[tuple[str, dict[str, Any]]] = [
        ("read_cell", {"cell_index": 0}),
        ("read_cell", {"cell_index": 1}),
        ("read_cell_output", {"cell_index": 1, "offset": 100, "max_chars": 50}),
        ("read_notebook", {"limit": 10}),
        ("read_notebook", {"response_format": "detailed"}),
        ("read_all_cells", {}),
        ("read_cell", {"cell_index": 99}),
    ]
    answers: dict[bool, list[Any]] = {}
    for structured, path in ((False, plain_path), (True, structured_path)):
        settings = Settings(path=path, read_only=True, structured_output=structured)
        async with Client(build_server(settings)) as client:
            tools = (await client.list_tools()).tools
            schemas = [t.name for t in tools if t.output_schema is not None]
            assert schemas == ([t.name for t in tools] if structured else []), schemas
            answers[structured] = [await client.call_tool(name, args) for name, args in calls]
    for (name, _), plain, fields in zip(calls, answers[False], answers[True], strict=True):
        assert plain.content == fields.content, name  # the same text, the same images
        assert plain.structured_content is None
        if fields.is_error:
            assert plain.is_error and fields.structured_content is None, name
        else:
            assert fields.structured_content["text"] == plain.content[0].text, name
    read = answers[True][0]
    assert read.structured_content["cell_id"] == nbformat.read(plain_path, 4).cells[0].id
    assert read.structured_content["images"][0]["mime_type"] == "image/png"


async def test_a_300k_print_names_the_cut_and_the_call_in_its_first_line(client: Client) -> None:
    full = "a" * 150_000 + "b" * 150_000 + "\n"
    r = await client.call_tool("append_execute_code_cell", {"cell_source": "print('a' * 150_000 + 'b' * 150_000)"})
    text = text_of(r)
    first = text.split("\n", 1)[0]
    found = CALL.search(first)
    assert found is not None and first.startswith("Left out of this answer: "), first
    omitted = re.search(r"(\d+) characters of output 0: ", first)
    assert omitted and int(omitted.group(1)) > 250_000, first
    # The marker in place names the same call.
    assert f"characters omitted; {found.group(0)} returns them" in text
    # A client that keeps only the start of a long answer (Codex cut one to 10,000 in the middle)
    # still hands its model the way to the rest; the call returns exactly what follows the shown head.
    assert CALL.search(text[:1_000]) is not None
    cell_id, output_index, offset = found.group(1), int(found.group(2)), int(found.group(3))
    page = await client.call_tool(
        "read_cell_output", {"cell_id": cell_id, "output_index": output_index, "offset": offset}
    )
    head, rest = text_of(page).split("\n", 1)
    assert full.startswith(rest, offset) and len(rest) == 20_000
    assert text.split("\n")[2] == full[:offset]  # the shown head of the output ends where the page starts
    # A page that does not reach the end names the exact call for the next one in its first line.
    following = CALL.search(head)
    assert following is not None and int(following.group(3)) == offset + 20_000, head


async def test_reading_answers_name_what_they_leave_out_first(reader: Client) -> None:
    r = await reader.call_tool("read_all_cells", {})
    first = text_of(r).split("\n", 1)[0]
    # Cells that did not fit, and the long output cut inside the page: each with its call.
    assert first.startswith("Left out of this answer: cells "), first
    page = re.search(r"read_notebook\(start_index=(\d+), response_format='detailed'\)", first)
    assert page is not None and f"Next page: {page.group(0)}" in text_of(r)
    found = CALL.search(first)
    assert found is not None and found.group(2) == "0" and f"{found.group(0)} returns them" in text_of(r)
    # An image a page does not show is named too, with the call that returns it.
    assert "image output 1: read_cell_output(cell_id=" in first
    # A read that leaves nothing out has no such line.
    r = await reader.call_tool("read_notebook", {"limit": 3})
    assert text_of(r).startswith("Cells 0 to 2 of 42 (brief). Next page: read_notebook(start_index=3")


def _settings(*args: str) -> Settings:
    parser = command_parser("nbmcp", "", "")
    add_server_arguments(parser)
    return settings_from_args(parser.parse_args(["x.ipynb", *args]))


def test_structured_output_flag_and_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NBMCP_STRUCTURED_OUTPUT", raising=False)
    assert _settings().structured_output is False
    assert _settings("--structured-output").structured_output is True
    monkeypatch.setenv("NBMCP_STRUCTURED_OUTPUT", "1")
    assert _settings().structured_output is True
    monkeypatch.setenv("NBMCP_STRUCTURED_OUTPUT", "0")
    assert _settings().structured_output is False
    monkeypatch.setenv("NBMCP_STRUCTURED_OUTPUT", "maybe")
    with pytest.raises(UsageError, match="NBMCP_STRUCTURED_OUTPUT='maybe' is not a boolean"):
        _settings()


@pytest.mark.timeout(180)
async def test_over_real_stdio_plain_by_default_and_structured_with_the_variable(nb_path: Path) -> None:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("NBMCP_STRUCTURED_OUTPUT", None)
    params = StdioServerParameters(command=sys.executable, args=["-m", "nbmcp", str(nb_path)], env=env)
    async with Client(params) as client:
        # The instructions' first line stands alone (some clients show only it).
        first = (client.instructions or "").split("\n", 1)[0]
        assert first.startswith("nbmcp edits and runs Jupyter notebooks") and first.endswith(
            "saved to the file at once."
        )
        assert all(t.output_schema is None for t in (await client.list_tools()).tools)
        r = await client.call_tool("append_execute_code_cell", {"cell_source": IMAGE_CELL})
        assert r.structured_content is None and [b.type for b in r.content] == ["text", "image"]
        assert r.content[1].data == PNG_B64
    env["NBMCP_STRUCTURED_OUTPUT"] = "1"
    params = StdioServerParameters(command=sys.executable, args=["-m", "nbmcp", str(nb_path)], env=env)
    async with Client(params) as client:
        assert all(t.output_schema is not None for t in (await client.list_tools()).tools)
        r = await client.call_tool("read_cell", {"cell_index": 0})
        assert [b.type for b in r.content] == ["text", "image"]
        assert r.structured_content["text"] == r.content[0].text and r.structured_content["cell_index"] == 0
        # The structured view names the image; the image itself is in content.
        assert r.structured_content["images"][0]["bytes"] == 69  # the 1x1 PNG's size
