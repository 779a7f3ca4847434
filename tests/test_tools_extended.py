"""Issue 4: cell ids everywhere and the tools beyond the seed, through the MCP client on a real kernel."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import anyio
import nbformat
import pytest
from mcp import Client

from nbmcp.config import Settings
from nbmcp.server.app import build_server
from nbmcp.server.tools import (
    ALL_TOOLS,
    MAX_READ_LIMIT,
    READ_NOTEBOOK_LIMIT,
    READ_ONLY_TOOLS,
    SEED_TOOLS,
    TOOL_ANNOTATIONS,
    WORKSPACE_TOOLS,
)
from nbmcp.session.variables import MAX_VARIABLES, VARIABLE_REPR_CHARS

from .conftest import copy_golden, read_nb, text_of

pytestmark = pytest.mark.anyio

STALE = "not found; the notebook may have changed, read it again"


@pytest.fixture
def client(structured_client: Client) -> Client:
    """These tests read answers' fields (cell_id, status): the server runs with --structured-output."""
    return structured_client


async def call(client: Client, tool: str, **args: object) -> Any:
    result = await client.call_tool(tool, args)
    assert not result.is_error, text_of(result)
    return result


async def refused(client: Client, tool: str, **args: object) -> str:
    result = await client.call_tool(tool, args)
    assert result.is_error, text_of(result)
    return text_of(result)


def test_tool_table_constants() -> None:
    assert set(SEED_TOOLS) < set(ALL_TOOLS) and len(ALL_TOOLS) == 32
    assert READ_NOTEBOOK_LIMIT == 50 and MAX_READ_LIMIT == 500
    assert MAX_VARIABLES == 500 and VARIABLE_REPR_CHARS == 120
    assert set(READ_ONLY_TOOLS) == {
        "read_cell",
        "read_all_cells",
        "get_notebook_info",
        "read_notebook",
        "read_cell_output",
        "list_variables",
        "list_notebooks",
        "list_changes",
        "wait_for_execution",
        "list_executions",
    }


async def test_every_tool_is_listed_with_its_annotations(client: Client) -> None:
    tools = {t.name: t for t in (await client.list_tools()).tools}
    # The workspace tools are listed by servers of a folder (tests/test_workspace.py).
    assert set(tools) == set(ALL_TOOLS) - set(WORKSPACE_TOOLS)
    for name, tool in tools.items():
        assert tool.annotations == TOOL_ANNOTATIONS[name], name
        assert tool.annotations.read_only_hint is not None and tool.annotations.destructive_hint is not None
        assert tool.annotations.idempotent_hint is not None
        assert tool.description and len(tool.description) > 40, name
    # Every tool that addresses a cell by index also takes an id.
    for name, tool in tools.items():
        props = tool.input_schema.get("properties", {})
        if "cell_index" in props or "source_index" in props:
            assert "cell_id" in props or "source_cell_id" in props, name


async def test_ids_survive_moves_and_external_inserts(client: Client, nb_path: Path) -> None:
    for source in ("# A", "# B", "# C"):
        await call(client, "append_markdown_cell", cell_source=source)
    b_id = (await call(client, "read_cell", cell_index=1)).structured_content["cell_id"]

    r = await call(client, "move_cell", source_cell_id=b_id, target_index=-1)
    sc = r.structured_content
    assert (sc["cell_id"], sc["from_index"], sc["cell_index"]) == (b_id, 1, 2)
    assert f"cell 2 (id {b_id})" in text_of(r)
    r = await call(client, "read_cell", cell_id=b_id)
    assert r.structured_content["cell_index"] == 2 and r.structured_content["text"].endswith("\n# B")

    # Someone else (an editor, git) inserts two cells at the top of the file.
    nb = read_nb(nb_path)
    nb.cells[0:0] = [nbformat.v4.new_code_cell("print('theirs')"), nbformat.v4.new_raw_cell("raw")]
    nbformat.write(nb, nb_path)
    r = await call(client, "read_cell", cell_id=b_id)
    assert r.structured_content["cell_index"] == 4 and r.structured_content["text"].endswith("\n# B")

    r = await call(client, "overwrite_cell_source", cell_id=b_id, cell_source="# B2")
    assert (r.structured_content["cell_index"], r.structured_content["cell_id"]) == (4, b_id)
    assert "+# B2" in r.structured_content["text"]
    r = await call(client, "execute_cell", cell_id=nb.cells[0].id)
    assert "theirs" in text_of(r) and r.structured_content["cell_index"] == 0

    r = await call(client, "delete_cell", cell_id=b_id)
    assert r.structured_content["cell_index"] == 4 and b_id in text_of(r)
    for tool, args in [
        ("read_cell", {}),
        ("delete_cell", {}),
        ("overwrite_cell_source", {"cell_source": "x"}),
        ("execute_cell", {}),
        ("clear_cell_output", {}),
        ("edit_cell_source", {"old_string": "B", "new_string": "C"}),
        ("read_cell_output", {}),
        ("insert_cell", {"cell_type": "code", "cell_source": "x"}),
    ]:
        assert STALE in await refused(client, tool, cell_id=b_id, **args), tool
    assert STALE in await refused(client, "move_cell", source_cell_id=b_id, target_index=0)
    assert "exactly one" in await refused(client, "read_cell", cell_index=0, cell_id=nb.cells[0].id)
    assert "exactly one" in await refused(client, "read_cell")
    assert [c.source for c in read_nb(nb_path).cells] == ["print('theirs')", "raw", "# A", "# C"]


async def test_insert_cell_of_each_type(client: Client, nb_path: Path) -> None:
    r = await call(client, "insert_cell", cell_index=-1, cell_type="markdown", cell_source="# End")
    end_id = r.structured_content["cell_id"]
    await call(client, "insert_cell", cell_index=0, cell_type="code", cell_source="1 + 1")
    r = await call(client, "insert_cell", cell_id=end_id, cell_type="raw", cell_source="raw text")
    assert r.structured_content["cell_index"] == 1 and "Inserted raw cell 1 (id " in text_of(r)
    cells = read_nb(nb_path).cells
    assert [(c.cell_type, c.source) for c in cells] == [("code", "1 + 1"), ("raw", "raw text"), ("markdown", "# End")]
    r = await client.call_tool("insert_cell", {"cell_index": 0, "cell_type": "heading", "cell_source": "x"})
    assert r.is_error


async def test_edit_cell_source_exact_replacement_and_ambiguity(client: Client, nb_path: Path) -> None:
    await call(client, "append_execute_code_cell", cell_source="a = 1\nb = 1\nprint(a + b)")
    before = nb_path.read_bytes()
    text = await refused(client, "edit_cell_source", cell_index=0, old_string=" = 1", new_string=" = 2")
    assert "occurs 2 times in cell 0 (id " in text and "replace_all" in text
    text = await refused(client, "edit_cell_source", cell_index=0, old_string="c = 1", new_string="c = 2")
    assert "does not occur in cell 0" in text
    assert "empty" in await refused(client, "edit_cell_source", cell_index=0, old_string="", new_string="x")
    assert nb_path.read_bytes() == before

    r = await call(client, "edit_cell_source", cell_index=0, old_string="b = 1", new_string="b = 40")
    assert r.structured_content["replacements"] == 1
    assert "-b = 1" in text_of(r) and "+b = 40" in text_of(r)
    r = await call(client, "edit_cell_source", cell_index=0, old_string="a", new_string="x", replace_all=True)
    assert r.structured_content["replacements"] == 2
    cell = read_nb(nb_path).cells[0]
    assert cell.source == "x = 1\nb = 40\nprint(x + b)"
    assert cell.outputs[0].text == "2\n"  # outputs kept: the cell is not run
    r = await call(client, "execute_cell", cell_index=0)
    assert "41" in text_of(r)


async def test_execute_code_runs_in_the_kernel_and_saves_nothing(client: Client, nb_path: Path) -> None:
    await call(client, "append_execute_code_cell", cell_source="base = 40")
    before = nb_path.read_bytes()
    r = await call(client, "execute_code", code="scratch = base + 2\nprint('scratch is', scratch)\nscratch")
    assert "scratch is 42" in text_of(r) and r.structured_content["saved"] is False
    r = await call(client, "execute_code", code="1/0")
    assert r.structured_content["status"] == "error" and "ZeroDivisionError" in text_of(r)
    assert nb_path.read_bytes() == before
    # Its variables stay in the kernel; it took no execution count (store_history=False).
    r = await call(client, "append_execute_code_cell", cell_source="scratch")
    assert "42" in text_of(r) and r.structured_content["execution_count"] == 2


async def test_list_variables_after_assignments(client: Client, nb_path: Path) -> None:
    code = (
        "import os\nnumber = 7\ntext = 'hello'\nlong = 'x' * 1000\n_private = 1\n"
        "class Grid:\n    shape = (2, 3)\n    def __repr__(self): return 'Grid(2x3)'\ngrid = Grid()"
    )
    await call(client, "append_execute_code_cell", cell_source=code)
    before = nb_path.read_bytes()
    r = await call(client, "list_variables")
    lines = r.structured_content["text"].splitlines()
    variables = {line.split(":")[0]: line for line in lines[1:]}
    assert set(variables) == {"Grid", "grid", "long", "number", "text"}  # no modules, no _names
    assert variables["number"] == "number: int = 7"
    assert variables["text"] == "text: str = 'hello'"
    assert variables["grid"] == "grid: __main__.Grid shape=(2, 3) = Grid(2x3)"
    assert len(variables["long"]) <= len("long: str = ") + VARIABLE_REPR_CHARS
    assert text_of(r) == r.structured_content["text"] and r.structured_content["shown"] == 5
    # Listing defines nothing, adds no cell and no execution count.
    r = await call(client, "list_variables")
    assert r.structured_content["total"] == 5
    assert nb_path.read_bytes() == before
    r = await call(client, "append_execute_code_cell", cell_source="number")
    assert r.structured_content["execution_count"] == 2


async def test_read_notebook_pages_a_1000_cell_notebook(tmp_path: Path) -> None:
    path = tmp_path / "work" / "big.ipynb"
    nb = nbformat.v4.new_notebook()
    for i in range(1000):
        if i % 3:
            nb.cells.append(nbformat.v4.new_code_cell(f"value_{i} = {i}\n# more lines\n" * 3))
        else:
            nb.cells.append(nbformat.v4.new_markdown_cell(f"## Section {i}\ntext"))
    nbformat.write(nb, path)
    ids = [c.id for c in nb.cells]
    async with Client(
        build_server(Settings(path=path, timeout=60, kernel_at_open=False, structured_output=True))
    ) as client:
        t0 = time.monotonic()
        r = await call(client, "read_notebook")
        sc = r.structured_content
        assert (sc["total_cells"], sc["start_index"], sc["next_start_index"]) == (1000, 0, READ_NOTEBOOK_LIMIT)
        assert sc["end_index"] == READ_NOTEBOOK_LIMIT - 1
        assert f"   1 {ids[1]} code [ ]: value_1 = 1" in sc["text"]
        assert "Next page: read_notebook(start_index=50" in text_of(r)
        assert f"   3 {ids[3]} markdown: ## Section 3" in text_of(r)
        assert len(text_of(r)) < 4_000

        seen: list[str] = []
        start: int | None = 0
        pages = 0
        while start is not None:
            r = await call(client, "read_notebook", start_index=start, limit=300)
            seen += re.findall(r"^ *\d+ (\S+) ", r.structured_content["text"], flags=re.MULTILINE)
            start = r.structured_content["next_start_index"]
            pages += 1
        assert seen == ids and pages == 4  # 300 one-line cells fit in the budget
        assert "Last page." in text_of(r)
        elapsed = time.monotonic() - t0
        assert elapsed < 10, elapsed

        r = await call(client, "read_notebook", start_index=998, limit=5, response_format="detailed")
        assert (r.structured_content["start_index"], r.structured_content["end_index"]) == (998, 999)
        assert nb.cells[998].source in r.structured_content["text"] and nb.cells[999].source in text_of(r)
        assert "value_998 = 998\n# more lines\nvalue_998" in text_of(r)
        assert "valid: 0 to 999" in await refused(client, "read_notebook", start_index=1000)
        assert "between 1 and 500" in await refused(client, "read_notebook", limit=501)


async def test_read_cell_output_returns_the_exact_remainder_of_a_200k_output(client: Client, nb_path: Path) -> None:
    code = "print(''.join(f'{i:07d}\\n' for i in range(25_000)), end='')"
    r = await call(client, "append_execute_code_cell", cell_source=code)
    full = read_nb(nb_path).cells[0].outputs[0].text
    assert len(full) == 200_000
    cell_id = r.structured_content["cell_id"]
    shown = text_of(r)
    assert len(shown) < 25_000
    marker = re.search(
        r"\[\.\.\. (\d+) characters omitted; read_cell_output\(cell_id='(\w+)', output_index=0, offset=(\d+)\)", shown
    )
    assert marker, shown[:500]
    assert marker.group(2) == cell_id
    offset = int(marker.group(3))
    head = shown[shown.index("0000000\n") : shown.index("\n[... ")]
    assert full[:offset] == head

    rest = ""
    pages = 0
    next_offset: int | None = offset
    while next_offset is not None:
        r = await call(client, "read_cell_output", cell_id=cell_id, offset=next_offset)
        sc = r.structured_content
        assert {"text", "offset", "next_offset", "total_chars", "cell_index", "cell_id", "output_index"} <= set(sc)
        assert sc["offset"] == next_offset and sc["total_chars"] == 200_000
        assert sc["text"] == text_of(r)
        rest += sc["text"].split("\n", 1)[1]  # the first line says which characters these are
        next_offset = sc["next_offset"]
        pages += 1
    assert head + rest == full
    assert pages == -(-(200_000 - offset) // 20_000)

    r = await call(client, "read_cell_output", cell_index=0, offset=199_990, max_chars=5)
    assert r.structured_content["text"].split("\n", 1)[1] == full[199_990:199_995]
    assert r.structured_content["next_offset"] == 199_995
    assert "out of range" in await refused(client, "read_cell_output", cell_index=0, output_index=1)
    assert "valid: 0 to 200000" in await refused(client, "read_cell_output", cell_index=0, offset=200_001)


async def test_clear_cell_output_and_clear_all_outputs(client: Client, nb_path: Path) -> None:
    await call(client, "append_execute_code_cell", cell_source="print('one')")
    r = await call(client, "append_execute_code_cell", cell_source="print('two')")
    second = r.structured_content["cell_id"]
    await call(client, "append_markdown_cell", cell_source="# text")
    r = await call(client, "clear_cell_output", cell_id=second)
    sc = r.structured_content
    assert (sc["cell_index"], sc["cell_id"], sc["removed_outputs"]) == (1, second, 1)
    cells = read_nb(nb_path).cells
    assert cells[0].outputs and (cells[1].outputs, cells[1].execution_count) == ([], None)
    assert "markdown cell" in await refused(client, "clear_cell_output", cell_index=2)
    r = await call(client, "clear_all_outputs")
    assert r.structured_content["cells_cleared"] == 1
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in read_nb(nb_path).cells)


async def test_execute_cell_progress_interrupt_kernel_and_restart_kernel(client: Client) -> None:
    code = "import time\nkept = 'yes'\nfor i in range(60):\n    print('tick', i, flush=True)\n    time.sleep(0.5)"
    await call(client, "insert_cell", cell_index=0, cell_type="code", cell_source=code)
    progress: list[str] = []
    results: list[Any] = []
    started = anyio.Event()

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(message or "")
        if "tick" in (message or ""):
            started.set()

    async def run_cell() -> None:
        results.append(await client.call_tool("execute_cell", {"cell_index": 0}, progress_callback=on_progress))

    t0 = time.monotonic()
    async with anyio.create_task_group() as tg:
        tg.start_soon(run_cell)
        with anyio.fail_after(20):
            await started.wait()
        r = await call(client, "interrupt_kernel")
        assert r.structured_content["was_running"] is True
    assert time.monotonic() - t0 < 15
    result = results[0]
    assert result.structured_content["status"] == "error" and "KeyboardInterrupt" in text_of(result)
    assert any("tick" in m for m in progress)

    r = await call(client, "execute_code", code="kept")
    assert "'yes'" in text_of(r)  # an interrupt keeps the variables
    r = await call(client, "restart_kernel")
    assert r.structured_content["state"] == "idle"
    r = await call(client, "execute_code", code="kept")
    assert "NameError" in text_of(r)
    r = await call(client, "interrupt_kernel")
    assert r.structured_content["was_running"] is False


async def test_a_4_4_notebook_is_read_by_index_without_ids(tmp_path: Path) -> None:
    path = copy_golden("v44_no_ids.ipynb", tmp_path / "work" / "old.ipynb")
    before = path.read_bytes()
    async with Client(
        build_server(Settings(path=path, timeout=60, kernel_at_open=False, structured_output=True))
    ) as client:
        r = await call(client, "read_notebook")
        assert re.findall(r"^ *\d+ (\S+) ", r.structured_content["text"], flags=re.MULTILINE) == ["-", "-"]
        assert "   1 - markdown: # Old notebook" in text_of(r)
        r = await call(client, "read_cell", cell_index=1)
        assert "cell 1 (no id" in text_of(r)
        assert STALE in await refused(client, "read_cell", cell_id="anything")
        assert path.read_bytes() == before  # reading never upgrades the file
        r = await call(client, "edit_cell_source", cell_index=1, old_string="Old", new_string="Upgraded")
        assert r.structured_content["cell_id"]
    nb = read_nb(path)
    assert nb.nbformat_minor == 5 and nb.cells[1].source == "# Upgraded notebook"
