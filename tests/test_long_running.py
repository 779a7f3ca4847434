"""Executions that outlive the call (issue 15): --max-wait, wait_for_execution, one execution at a time.

A real ipykernel and the official MCP client in memory. The server answers an execution tool after
--max-wait (3 s here) with the outputs so far and an execution id, while the cell runs on in a task
owned by the session and its outputs keep reaching the file.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from nbmcp.cli.main import cli
from nbmcp.config import Settings
from nbmcp.server.app import build_server
from nbmcp.session.executions import DEFAULT_MAX_WAIT, KEPT_EXECUTIONS

from .conftest import read_nb, text_of

pytestmark = pytest.mark.anyio

MAX_WAIT = 3
#: Prints, sleeps past --max-wait, prints again.
#: The printed words are apart in the source, so a traceback quoting it never matches "second line".
SLOW_CELL = "import time\nprint('first', 'line', flush=True)\ntime.sleep(8)\nprint('second', 'line', flush=True)"


@pytest.fixture
async def slow_client(nb_path: Path) -> AsyncIterator[Client]:
    server = build_server(Settings(path=nb_path, timeout=60, max_wait=MAX_WAIT, structured_output=True))
    async with Client(server) as c:
        # The first execution also waits for the kernel to start: do that before timing anything.
        r = await c.call_tool("execute_code", {"code": "1"})
        with anyio.fail_after(60):
            while r.structured_content["running"]:
                r = await c.call_tool("wait_for_execution", {"execution_id": r.structured_content["execution_id"]})
        assert r.structured_content["status"] == "ok", text_of(r)
        yield c


async def call(client: Client, name: str, **args: Any) -> Any:
    r = await client.call_tool(name, args)
    assert not r.is_error, text_of(r)
    return r


def both_views(r: Any) -> str:
    """The answer's text; both views must carry the same text."""
    assert r.structured_content is not None
    assert text_of(r) == r.structured_content["text"]
    return str(r.structured_content["text"])


async def test_a_long_cell_answers_after_max_wait_and_wait_for_execution_gets_the_rest(
    slow_client: Client, nb_path: Path
) -> None:
    r = await call(slow_client, "insert_cell", cell_index=0, cell_type="code", cell_source=SLOW_CELL)
    cell_id = r.structured_content["cell_id"]

    t0 = time.monotonic()
    r = await call(slow_client, "execute_cell", cell_id=cell_id)
    answered = time.monotonic() - t0
    # About --max-wait (3 s); generous bound, far below the cell's 8 s.
    assert answered < 6.5, answered
    sc = r.structured_content
    text = both_views(r)
    assert sc["running"] is True and sc["status"] == "running"
    execution_id = sc["execution_id"]
    assert execution_id and execution_id in text
    assert "first line" in text and "second line" not in text
    assert f"wait_for_execution(execution_id={execution_id!r})" in text
    assert sc["cell_id"] == cell_id

    # The cell runs on: a list shows it, and so does get_notebook_info.
    r = await call(slow_client, "list_executions")
    assert r.structured_content["running_execution_id"] == execution_id
    assert "RUNNING" in both_views(r)
    r = await call(slow_client, "get_notebook_info")
    assert r.structured_content["kernel"]["running_execution"]["execution_id"] == execution_id

    # Each wait lasts at most --max-wait; the cell needs about 5 s more.
    final = None
    with anyio.fail_after(30):
        while final is None:
            t1 = time.monotonic()
            r = await call(slow_client, "wait_for_execution", execution_id=execution_id, timeout_seconds=100)
            assert time.monotonic() - t1 < MAX_WAIT + 3
            if not r.structured_content["running"]:
                final = r
    sc = final.structured_content
    text = both_views(final)
    assert sc["status"] == "ok" and sc["execution_id"] == execution_id and sc["saved"] is True
    assert "first line" in text and "second line" in text

    cell = read_nb(nb_path).cells[0]
    saved = "".join(o.get("text", "") for o in cell.outputs)
    assert "first line" in saved and "second line" in saved
    assert cell.execution_count == sc["execution_count"]

    # Finished executions stay available; the list says it finished.
    r = await call(slow_client, "wait_for_execution", execution_id=execution_id)
    assert "second line" in both_views(r) and r.structured_content["running"] is False
    r = await call(slow_client, "list_executions")
    assert r.structured_content["running_execution_id"] is None
    assert f"{execution_id}: cell 0 (id {cell_id}) finished (ok)" in both_views(r)


async def test_outputs_reach_the_file_while_the_cell_runs_in_the_background(slow_client: Client, nb_path: Path) -> None:
    r = await call(slow_client, "append_execute_code_cell", cell_source=SLOW_CELL)
    assert r.structured_content["running"] is True
    # Nobody waits; the periodic write-back still saves the first line before the cell ends.
    with anyio.fail_after(4):
        while True:
            outputs = read_nb(nb_path).cells[0].outputs
            if any("first line" in o.get("text", "") for o in outputs):
                break
            await anyio.sleep(0.2)
    assert not any("second line" in o.get("text", "") for o in outputs)
    with anyio.fail_after(20):
        while True:
            outputs = read_nb(nb_path).cells[0].outputs
            if any("second line" in o.get("text", "") for o in outputs):
                break
            await anyio.sleep(0.3)


async def test_a_second_execution_while_one_runs_is_refused_at_once(slow_client: Client, nb_path: Path) -> None:
    r = await call(slow_client, "append_execute_code_cell", cell_source=SLOW_CELL)
    execution_id = r.structured_content["execution_id"]
    cell_id = r.structured_content["cell_id"]
    assert r.structured_content["running"] is True
    cells_before = len(read_nb(nb_path).cells)

    for name, args in [
        ("execute_code", {"code": "print('never')"}),
        ("execute_cell", {"cell_index": 0}),
        ("append_execute_code_cell", {"cell_source": "print('never')"}),
        ("execute_all_cells", {}),
        ("list_variables", {}),
    ]:
        t0 = time.monotonic()
        r = await slow_client.call_tool(name, args)
        assert time.monotonic() - t0 < 2, name
        assert r.is_error, name
        message = text_of(r)
        assert "busy" in message and f"cell 0 (id {cell_id})" in message, message
        assert execution_id in message and "wait_for_execution" in message and "interrupt_kernel" in message
    # The refused append added no cell.
    assert len(read_nb(nb_path).cells) == cells_before

    r = await call(slow_client, "interrupt_kernel")
    assert r.structured_content["was_running"] is True
    r = await call(slow_client, "wait_for_execution", execution_id=execution_id)
    assert r.structured_content["running"] is False


async def test_interrupt_kernel_stops_a_background_execution(slow_client: Client, nb_path: Path) -> None:
    code = "import time\nkept = 'yes'\nprint('started', flush=True)\ntime.sleep(60)\nprint('after', 'sleep')"
    r = await call(slow_client, "execute_code", code=code)
    sc = r.structured_content
    assert sc["running"] is True and "started" in both_views(r)

    t0 = time.monotonic()
    r = await call(slow_client, "interrupt_kernel")
    assert r.structured_content["was_running"] is True
    r = await call(slow_client, "wait_for_execution", execution_id=sc["execution_id"])
    assert time.monotonic() - t0 < 10
    text = both_views(r)
    assert r.structured_content["running"] is False and r.structured_content["status"] == "error"
    assert "KeyboardInterrupt" in text and "after sleep" not in text
    # The kernel is usable again and kept its variables.
    r = await call(slow_client, "execute_code", code="kept")
    assert "'yes'" in both_views(r) and r.structured_content["running"] is False


async def test_a_timeout_still_interrupts_a_background_execution(slow_client: Client, nb_path: Path) -> None:
    await call(slow_client, "insert_cell", cell_index=0, cell_type="code", cell_source=SLOW_CELL)
    r = await call(slow_client, "execute_cell", cell_index=0, timeout_seconds=4)
    assert r.structured_content["running"] is True
    r = await call(slow_client, "wait_for_execution", execution_id=r.structured_content["execution_id"])
    assert r.structured_content["status"] == "timeout" and "second line" not in both_views(r)
    assert "timed out after 4 s" in both_views(r)


async def test_wait_for_execution_names_the_known_executions(slow_client: Client) -> None:
    r = await slow_client.call_tool("wait_for_execution", {"execution_id": "nope"})
    assert r.is_error and "no execution 'nope'" in text_of(r) and "list_executions" in text_of(r)
    r = await slow_client.call_tool("wait_for_execution", {"execution_id": "nope", "timeout_seconds": 0})
    assert r.is_error and "timeout_seconds" in text_of(r)


async def test_a_cancelled_call_interrupts_its_execution(slow_client: Client) -> None:
    code = "import time\nprint('started', flush=True)\ntime.sleep(60)"
    with anyio.move_on_after(1.5):
        await slow_client.call_tool("execute_code", {"code": code})
    # The cancelled call interrupted the kernel: the next execution is not refused for long.
    with anyio.fail_after(15):
        while True:
            r = await slow_client.call_tool("list_executions", {})
            if r.structured_content["running_execution_id"] is None:
                break
            await anyio.sleep(0.2)
    # It ended at once, interrupted (a KeyboardInterrupt is an error), not after its 60 s.
    assert "scratch code (execute_code) finished (error)" in text_of(r)


async def test_finished_executions_are_kept_up_to_the_cap(slow_client: Client) -> None:
    ids = []
    for i in range(KEPT_EXECUTIONS + 2):
        r = await call(slow_client, "execute_code", code=f"{i} * 2")
        ids.append(r.structured_content["execution_id"])
    r = await call(slow_client, "list_executions")
    assert r.structured_content["count"] == KEPT_EXECUTIONS
    listed = both_views(r)
    assert ids[-1] in listed and ids[1] not in listed
    r = await slow_client.call_tool("wait_for_execution", {"execution_id": ids[0]})
    assert r.is_error and f"no execution {ids[0]!r}" in text_of(r)
    r = await call(slow_client, "wait_for_execution", execution_id=ids[-1])
    assert str((KEPT_EXECUTIONS + 1) * 2) in both_views(r)


def test_max_wait_flag_and_environment(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert Settings(path=Path("x.ipynb")).max_wait == DEFAULT_MAX_WAIT == 50 and KEPT_EXECUTIONS == 20
    with pytest.raises(SystemExit):
        cli("x.ipynb", "--max-wait", "0")
    assert "--max-wait must be a positive number" in capsys.readouterr().err
    monkeypatch.setenv("NBMCP_MAX_WAIT", "soon")
    with pytest.raises(SystemExit):
        cli("x.ipynb")
    assert "NBMCP_MAX_WAIT='soon' is not a number" in capsys.readouterr().err
