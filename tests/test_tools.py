"""Every seed tool through the official MCP client, in memory, on a real ipykernel."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import nbformat
import pytest
from mcp import Client

from nbmcp.config import Settings
from nbmcp.server.app import build_server
from nbmcp.session.session import CREATED_NOTE_ANSWERS

from .conftest import read_nb, text_of

pytestmark = pytest.mark.anyio

# A 1x1 red PNG, displayed by the kernel through IPython.display.
PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"


@pytest.fixture
def client(structured_client: Client) -> Client:
    """These tests read answers' fields (cell_id, status): the server runs with --structured-output."""
    return structured_client


async def call(client: Client, tool: str, **args: object):  # type: ignore[no-untyped-def]
    result = await client.call_tool(tool, args)
    assert not result.is_error, text_of(result)
    return result


async def test_seed_tools_are_all_listed_with_their_parameters(client: Client) -> None:
    tools = {t.name: t for t in (await client.list_tools()).tools}
    expected = {
        "append_markdown_cell": {"cell_source"},
        "insert_markdown_cell": {"cell_index", "cell_source"},
        "append_execute_code_cell": {"cell_source"},
        "insert_execute_code_cell": {"cell_index", "cell_source"},
        "overwrite_cell_source": {"cell_index", "cell_source"},
        "delete_cell": {"cell_index"},
        "execute_cell_simple_timeout": {"cell_index", "timeout_seconds"},
        "execute_cell_streaming": {"cell_index", "timeout_seconds", "progress_interval"},
        "execute_cell_with_progress": {"cell_index", "timeout_seconds"},
        "read_cell": {"cell_index"},
        "read_all_cells": set(),
        "get_notebook_info": set(),
    }
    for name, params in expected.items():
        assert name in tools, name
        props = tools[name].input_schema.get("properties", {})
        # Issue 4: every tool that takes cell_index also takes cell_id (one of the two); issue 5: every
        # notebook tool takes an optional notebook_path.
        extra = {"notebook_path"} | ({"cell_id"} if "cell_index" in params else set())
        # Issue 11: read_cell pages through a source too long for one answer.
        extra |= {"source_offset"} if name == "read_cell" else set()
        assert set(props) == params | extra, name
        assert set(tools[name].input_schema.get("required", [])) == params & {"cell_source"}, name
        assert tools[name].description and len(tools[name].description) > 40
        assert tools[name].annotations is not None
    props = tools["execute_cell_streaming"].input_schema["properties"]
    assert props["timeout_seconds"]["default"] == 300 and props["progress_interval"]["default"] == 5
    assert tools["execute_cell_simple_timeout"].input_schema["properties"]["timeout_seconds"]["default"] == 300
    assert tools["read_cell"].annotations.read_only_hint is True
    assert tools["delete_cell"].annotations.destructive_hint is True


async def test_markdown_cells_are_added_and_saved(client: Client, nb_path: Path) -> None:
    r = await call(client, "append_markdown_cell", cell_source="# Title")
    assert r.structured_content["cell_index"] == 0
    r = await call(client, "append_markdown_cell", cell_source="end")
    r = await call(client, "insert_markdown_cell", cell_index=1, cell_source="middle")
    cell_id = r.structured_content["cell_id"]
    assert "cell 1" in text_of(r) and cell_id in text_of(r)
    nb = read_nb(nb_path)
    assert [(c.cell_type, c.source) for c in nb.cells] == [
        ("markdown", "# Title"),
        ("markdown", "middle"),
        ("markdown", "end"),
    ]
    assert nb.cells[1].id == cell_id


async def test_print_and_expression_result(client: Client, nb_path: Path) -> None:
    r = await call(client, "append_execute_code_cell", cell_source="print('hello')\n6 * 7")
    text = text_of(r)
    assert "hello" in text and "42" in text and "execution_count 1" in text
    cell = read_nb(nb_path).cells[0]
    assert cell.execution_count == 1
    assert [o.output_type for o in cell.outputs] == ["stream", "execute_result"]
    assert cell.outputs[1].data["text/plain"] == "42"


async def test_state_persists_between_cells(client: Client) -> None:
    await call(client, "append_execute_code_cell", cell_source="x = 20")
    r = await call(client, "append_execute_code_cell", cell_source="x + 1")
    assert "21" in text_of(r)


async def test_png_output_is_returned_as_image_content(client: Client, nb_path: Path) -> None:
    code = (
        f"import base64\nfrom IPython.display import Image, display\ndisplay(Image(data=base64.b64decode('{PNG_B64}')))"
    )
    r = await call(client, "append_execute_code_cell", cell_source=code)
    images = [c for c in r.content if c.type == "image"]
    assert len(images) == 1 and images[0].mime_type == "image/png"
    assert base64.b64decode(images[0].data) == base64.b64decode(PNG_B64)
    assert "image/png" in read_nb(nb_path).cells[0].outputs[0].data


async def test_error_is_a_normal_result_with_the_traceback_saved(client: Client, nb_path: Path) -> None:
    r = await call(client, "append_execute_code_cell", cell_source="def f():\n    raise ValueError('bad value')\nf()")
    text = text_of(r)
    assert "ValueError" in text and "bad value" in text and "\x1b[" not in text
    assert r.structured_content["status"] == "error"
    cell = read_nb(nb_path).cells[0]
    assert cell.execution_count == 1 and cell.outputs[0].output_type == "error"


async def test_clear_output_wait_keeps_only_the_last_output(client: Client, nb_path: Path) -> None:
    code = (
        "from IPython.display import clear_output\n"
        "for i in range(3):\n    clear_output(wait=True)\n    print(f'step {i}')"
    )
    r = await call(client, "append_execute_code_cell", cell_source=code)
    assert "step 2" in text_of(r) and "step 0" not in text_of(r)
    outputs = read_nb(nb_path).cells[0].outputs
    assert [o.text for o in outputs] == ["step 2\n"]


async def test_update_display_by_display_id(client: Client, nb_path: Path) -> None:
    code = (
        "from IPython.display import display, update_display\n"
        "display('first', display_id='d')\nprint('between')\nupdate_display('final', display_id='d')"
    )
    r = await call(client, "append_execute_code_cell", cell_source=code)
    assert "final" in text_of(r) and "first" not in text_of(r)
    outputs = read_nb(nb_path).cells[0].outputs
    assert outputs[0].data["text/plain"] == "'final'"
    assert outputs[1].text == "between\n"


async def test_an_update_from_a_later_call_reaches_the_earlier_cell_in_the_file(client: Client, nb_path: Path) -> None:
    """As nbclient and JupyterLab do (issue 26): a display id is followed across executions, into the file;
    the kernel's language_info and ipywidgets' state are saved in the notebook's metadata."""
    await call(client, "append_execute_code_cell", cell_source="h = display('first', display_id=True)")
    await call(client, "append_execute_code_cell", cell_source="h.update('second'); print('ok')")
    await call(client, "append_execute_code_cell", cell_source="import ipywidgets\nipywidgets.IntSlider(7)")
    nb = read_nb(nb_path)
    assert nb.cells[0].outputs[0].data["text/plain"] == "'second'"
    assert [o.text for o in nb.cells[1].outputs] == ["ok\n"]
    assert nb.metadata.language_info["name"] == "python"
    model_id = nb.cells[2].outputs[0].data["application/vnd.jupyter.widget-view+json"]["model_id"]
    state = nb.metadata.widgets["application/vnd.jupyter.widget-state+json"]["state"][model_id]
    assert state["model_name"] == "IntSliderModel" and state["state"]["value"] == 7


async def test_timeout_interrupts_and_the_kernel_stays_usable(client: Client, nb_path: Path) -> None:
    await call(client, "append_markdown_cell", cell_source="placeholder")
    await call(client, "append_execute_code_cell", cell_source="print('started')")
    await call(client, "overwrite_cell_source", cell_index=1, cell_source="x = 5\nwhile True: pass")
    t0 = time.monotonic()
    r = await call(client, "execute_cell_simple_timeout", cell_index=1, timeout_seconds=2)
    elapsed = time.monotonic() - t0
    assert elapsed < 2 + 5, elapsed
    assert r.structured_content["status"] == "timeout"
    assert "timed out after 2 s" in text_of(r) and "KeyboardInterrupt" in text_of(r)
    r = await call(client, "append_execute_code_cell", cell_source="x * 2")
    assert "10" in text_of(r)  # same kernel, its state intact


async def test_a_dead_kernel_is_reported_and_restarted_for_the_next_call(client: Client) -> None:
    await call(client, "append_execute_code_cell", cell_source="before = 1")
    t0 = time.monotonic()
    r = await call(client, "append_execute_code_cell", cell_source="import os; os._exit(1)")
    assert time.monotonic() - t0 < 10
    assert r.structured_content["status"] == "dead"
    assert "kernel died" in text_of(r)
    info = await call(client, "get_notebook_info")
    assert info.structured_content["kernel"]["state"] == "dead"
    r = await call(client, "append_execute_code_cell", cell_source="'before' in globals(), 3 + 4")
    assert "(False, 7)" in text_of(r)


async def test_progress_notifications_arrive_during_a_3_second_cell(client: Client) -> None:
    await call(client, "append_markdown_cell", cell_source="x")
    await call(client, "insert_execute_code_cell", cell_index=0, cell_source="pass")
    code = "import time\nfor i in range(3):\n    print('tick', i, flush=True)\n    time.sleep(1)"
    await call(client, "overwrite_cell_source", cell_index=0, cell_source=code)
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    r = await client.call_tool("execute_cell_with_progress", {"cell_index": 0}, progress_callback=on_progress)
    assert not r.is_error
    assert len(seen) >= 2, seen
    assert [p for p, _, _ in seen] == sorted(p for p, _, _ in seen)
    assert any("tick" in (m or "") for _, _, m in seen)
    # Progress is the elapsed seconds, with no made-up total (the timeout as one read "1 %": issue 23).
    assert all(total is None for _, total, _ in seen), seen
    assert all(m and m.startswith(f"running for {p:.0f} s") for p, _, m in seen), seen
    assert "tick 2" in text_of(r)


async def test_streaming_progress_follows_the_interval(client: Client) -> None:
    await call(client, "append_execute_code_cell", cell_source="import time")
    await call(client, "overwrite_cell_source", cell_index=0, cell_source="import time; time.sleep(3.2)")
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    r = await client.call_tool(
        "execute_cell_streaming", {"cell_index": 0, "progress_interval": 2}, progress_callback=on_progress
    )
    assert not r.is_error
    assert 1 <= len(seen) <= 2, seen
    assert seen[0] >= 1.9


async def test_overwrite_returns_a_diff_and_keeps_outputs(client: Client, nb_path: Path) -> None:
    await call(client, "append_execute_code_cell", cell_source="a = 1\nprint(a)")
    r = await call(client, "overwrite_cell_source", cell_index=0, cell_source="a = 2\nprint(a)")
    text = text_of(r)
    assert "-a = 1" in text and "+a = 2" in text
    cell = read_nb(nb_path).cells[0]
    assert cell.source == "a = 2\nprint(a)" and cell.outputs[0].text == "1\n"


async def test_delete_names_what_was_deleted(client: Client, nb_path: Path) -> None:
    await call(client, "append_markdown_cell", cell_source="keep")
    await call(client, "append_markdown_cell", cell_source="# Doomed heading\nmore")
    r = await call(client, "delete_cell", cell_index=1)
    assert "markdown" in text_of(r) and "# Doomed heading" in text_of(r)
    assert [c.source for c in read_nb(nb_path).cells] == ["keep"]


async def test_read_cell_and_read_all_cells(client: Client) -> None:
    await call(client, "append_markdown_cell", cell_source="# Intro")
    await call(client, "append_execute_code_cell", cell_source="print('out'); 1")
    r = await call(client, "read_cell", cell_index=1)
    sc = r.structured_content
    assert sc["cell_index"] == 1 and sc["cell_type"] == "code" and sc["execution_count"] == 1
    assert "print('out'); 1" in sc["text"] and sc["cell_id"] and sc["outputs"] == 2
    assert "out" in text_of(r) and text_of(r) == sc["text"]
    r = await call(client, "read_all_cells")
    sc = r.structured_content
    assert (sc["total_cells"], sc["start_index"], sc["end_index"], sc["next_start_index"]) == (2, 0, 1, None)
    assert "[markdown]" in sc["text"] and "[code]" in sc["text"]
    assert "# Intro" in text_of(r) and "out" in text_of(r)


async def test_get_notebook_info(client: Client, nb_path: Path) -> None:
    await call(client, "append_markdown_cell", cell_source="m")
    await call(client, "append_execute_code_cell", cell_source="1")
    info = (await call(client, "get_notebook_info")).structured_content
    assert info["path"] == str(nb_path)
    assert info["total_cells"] == 2
    assert info["cell_types"] == {"code": 1, "markdown": 1, "raw": 0}
    assert info["kernel"]["name"] and info["kernel"]["state"] == "idle"


@pytest.mark.parametrize(
    "tool, args, valid",
    [
        ("read_cell", {"cell_index": 5}, "valid: 0 to 1"),
        ("delete_cell", {"cell_index": 2}, "valid: 0 to 1"),
        ("overwrite_cell_source", {"cell_index": 9, "cell_source": "x"}, "valid: 0 to 1"),
        ("execute_cell_simple_timeout", {"cell_index": 3}, "valid: 0 to 1"),
        ("insert_markdown_cell", {"cell_index": 7, "cell_source": "x"}, "valid: 0 to 2 (or -1 to append)"),
    ],
)
async def test_out_of_range_index_names_the_valid_range_and_changes_nothing(
    client: Client, nb_path: Path, tool: str, args: dict[str, object], valid: str
) -> None:
    await call(client, "append_markdown_cell", cell_source="a")
    await call(client, "append_markdown_cell", cell_source="b")
    before = nb_path.read_bytes()
    r = await client.call_tool(tool, args)
    assert r.is_error
    assert "out of range" in text_of(r) and valid in text_of(r)
    assert nb_path.read_bytes() == before


async def test_executing_a_markdown_cell_is_a_clear_error(client: Client) -> None:
    await call(client, "append_markdown_cell", cell_source="# not code")
    r = await client.call_tool("execute_cell_simple_timeout", {"cell_index": 0})
    assert r.is_error and "markdown cell" in text_of(r)


async def test_a_4_4_notebook_works_and_is_upgraded_on_first_change(tmp_path: Path) -> None:
    from mcp import Client

    from nbmcp.config import Settings
    from nbmcp.server.app import build_server

    from .conftest import copy_golden

    path = copy_golden("v44_no_ids.ipynb", tmp_path / "work" / "old.ipynb")
    async with Client(build_server(Settings(path=path, timeout=60, structured_output=True))) as client:
        r = await call(client, "read_cell", cell_index=0)
        assert r.structured_content["cell_id"] is None
        r = await call(client, "execute_cell_simple_timeout", cell_index=0)
        assert "42" in text_of(r)
    nb = read_nb(path)
    assert nb.nbformat_minor == 5 and all(c.id for c in nb.cells)
    assert nb.cells[0].outputs[0].data["text/plain"] == "42"


@pytest.mark.anyio
async def test_a_created_notebook_is_said_with_a_similar_name_in_its_folder(tmp_path: Path) -> None:
    # Issue 24: a mistyped path created an empty notebook and the assistant only said "no cells".
    folder = tmp_path / "work"
    nbformat.write(nbformat.v4.new_notebook(), folder / "analysis.ipynb")
    nbformat.write(nbformat.v4.new_notebook(), folder / "report.ipynb")
    async with Client(
        build_server(Settings(path=folder / "analysys.ipynb", timeout=60, kernel_at_open=False, structured_output=True))
    ) as client:
        answers = [await client.call_tool("get_notebook_info", {}) for _ in range(CREATED_NOTE_ANSWERS + 1)]
    for r in answers[:CREATED_NOTE_ANSWERS]:
        last = text_of(r).splitlines()[-1]
        assert last.startswith(f"Note: analysys.ipynb did not exist in {folder}, so nbmcp created it (empty)")
        assert "Did you mean analysis.ipynb?" in last and "report" not in last
        assert r.structured_content["text"] == text_of(r)
    assert "Note:" not in text_of(answers[-1])  # the first answers only
    assert (folder / "analysys.ipynb").exists()  # still created, as before


@pytest.mark.anyio
async def test_with_kernel_at_open_off_the_kernel_starts_at_the_first_execution(nb_path: Path) -> None:
    async with Client(build_server(Settings(path=nb_path, timeout=60, kernel_at_open=False))) as client:
        await client.call_tool("append_markdown_cell", {"cell_source": "edited without a kernel"})
        info = text_of(await client.call_tool("get_notebook_info", {}))
        assert '"state": "not started"' in info, info
        assert "2" in text_of(await client.call_tool("execute_code", {"code": "1 + 1"}))
        info = text_of(await client.call_tool("get_notebook_info", {}))
        assert '"state": "idle"' in info, info


@pytest.mark.anyio
async def test_a_created_notebook_without_a_similar_name_is_said_alone(nb_path: Path) -> None:
    nbformat.write(nbformat.v4.new_notebook(), nb_path.parent / "quarterly_sales_model.ipynb")
    async with Client(build_server(Settings(path=nb_path, timeout=60, kernel_at_open=False))) as client:
        text = text_of(await client.call_tool("read_notebook", {}))
    assert (
        text.splitlines()[-1] == f"Note: notebook.ipynb did not exist in {nb_path.parent}, so nbmcp created it (empty)"
    )


async def test_two_servers_in_one_process_keep_their_own_notebook_and_limits(tmp_path: Path) -> None:
    # Servers in one process share the tools' descriptions (made once) but each calls its own toolbox.
    first, second = tmp_path / "work" / "first.ipynb", tmp_path / "work" / "second.ipynb"
    async with (
        Client(build_server(Settings(path=first, max_output_chars=1000, kernel_at_open=False))) as a,
        Client(build_server(Settings(path=second, read_only=True))) as b,
    ):
        assert [t.name for t in (await a.list_tools()).tools] != [t.name for t in (await b.list_tools()).tools]
        await call(a, "append_markdown_cell", cell_source="only in first")
        refused = await b.call_tool("append_markdown_cell", {"cell_source": "not in second"})
        assert refused.is_error and "read-only" in text_of(refused)
        read = await call(a, "read_cell", cell_index=0, max_chars=5000)
        assert "only in first" in text_of(read)
    assert [c.source for c in read_nb(first).cells] == ["only in first"]
    assert not second.exists() or read_nb(second).cells == []
