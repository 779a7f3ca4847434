"""Kernel faults (issue 13): races between restart, interrupt and running code; a kernel killed while
idle; a call cancelled by the client. A real ipykernel behind the official MCP client, in memory."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from nbmcp.config import Settings
from nbmcp.server.app import build_server
from nbmcp.session.results import CANCELLED_NOTE

from .conftest import read_nb, text_of
from .test_stdio import RawStdio

pytestmark = pytest.mark.anyio

# A cell that swallows Ctrl+C: only killing the kernel stops it.
STUBBORN = """\
import time
print("started", flush=True)
while True:
    try:
        time.sleep(0.05)
    except KeyboardInterrupt:
        print("ignored an interrupt", flush=True)
"""


class Background:
    """A tool call running in a task; `started` is set when its progress shows "started"."""

    def __init__(self) -> None:
        self.started = anyio.Event()
        self.result: Any = None
        self.answered_at: float | None = None

    async def progress(self, progress: float, total: float | None, message: str | None) -> None:
        if message and "started" in message:
            self.started.set()

    async def call(self, c: Client, tool: str, args: dict[str, Any]) -> None:
        self.result = await c.call_tool(tool, args, progress_callback=self.progress)
        self.answered_at = time.monotonic()


async def test_restart_during_a_stubborn_cell_after_an_interrupt_keeps_the_session_alive(nb_path: Path) -> None:
    # The crash sequence of issue 13: a timed-out stubborn cell, interrupt_kernel, restart_kernel, then
    # another cell that times out. It used to end the MCP session ("Connection closed").
    server = build_server(Settings(path=nb_path, timeout=12, structured_output=True))
    async with Client(server) as c:
        run = Background()
        async with anyio.create_task_group() as tg:
            tg.start_soon(run.call, c, "execute_code", {"code": STUBBORN})
            with anyio.fail_after(60):
                await run.started.wait()
            r = await c.call_tool("interrupt_kernel", {})
            assert not r.is_error, text_of(r)
            asked = time.monotonic()
            r = await c.call_tool("restart_kernel", {})
            assert not r.is_error, text_of(r)
            restarted = time.monotonic() - asked
        assert run.answered_at is not None and run.answered_at - asked < 5, "the running call did not answer at once"
        assert restarted < 12, f"restart_kernel took {restarted:.1f} s"
        text = text_of(run.result)
        assert "started" in text and "restart_kernel" in text
        assert run.result.structured_content["status"] == "interrupted"
        r = await c.call_tool("execute_code", {"code": "while True: pass", "timeout_seconds": 3})
        assert "TIMED OUT" in text_of(r)
        r = await c.call_tool("execute_code", {"code": "print(6 * 7)"})
        assert not r.is_error and "42" in text_of(r)


async def test_restart_rescues_a_stubborn_cell_within_seconds(nb_path: Path) -> None:
    server = build_server(Settings(path=nb_path, timeout=300))
    async with Client(server) as c:
        r = await c.call_tool("append_markdown_cell", {"cell_source": "# a stubborn cell follows"})
        r = await c.call_tool("insert_cell", {"cell_index": 1, "cell_type": "code", "cell_source": STUBBORN})
        assert not r.is_error, text_of(r)
        run = Background()
        async with anyio.create_task_group() as tg:
            tg.start_soon(run.call, c, "execute_cell", {"cell_index": 1})
            with anyio.fail_after(60):
                await run.started.wait()
            asked = time.monotonic()
            with anyio.fail_after(30):
                r = await c.call_tool("restart_kernel", {})
            assert not r.is_error, text_of(r)
            restarted = time.monotonic() - asked
        assert run.answered_at is not None and run.answered_at - asked < 5
        print(
            f"stubborn cell: the running call answered {run.answered_at - asked:.2f} s after restart_kernel, "
            f"which returned with a new kernel after {restarted:.1f} s"
        )
        assert "restart_kernel" in text_of(run.result) and "started" in text_of(run.result)
        # The partial output is saved in the cell, and the new kernel runs code.
        assert "started" in read_nb(nb_path).cells[1].outputs[0].text
        r = await c.call_tool("execute_code", {"code": "print('fresh kernel')"})
        assert "fresh kernel" in text_of(r)


async def test_a_kernel_killed_while_idle_is_replaced_and_the_next_cell_runs(nb_path: Path) -> None:
    server = build_server(Settings(path=nb_path, timeout=60, structured_output=True))
    async with Client(server) as c:
        r = await c.call_tool("execute_code", {"code": "import os; print(os.getpid())"})
        pid = int(text_of(r).split()[-1])
        os.kill(pid, signal.SIGKILL)
        with anyio.fail_after(10):
            while True:
                info = (await c.call_tool("get_notebook_info", {})).structured_content
                if info is not None and info["kernel"]["state"] != "idle":
                    break
                await anyio.sleep(0.1)
        assert info["kernel"]["state"] == "dead"
        r = await c.call_tool("append_execute_code_cell", {"cell_source": "print('ran after the kill')"})
        text = text_of(r)
        assert not r.is_error and "ran after the kill" in text, text
        assert "THE KERNEL DIED" not in text and "had died since the last call" in text
        assert read_nb(nb_path).cells[0].outputs[0].text == "ran after the kill\n"


async def test_a_cancelled_call_saves_its_outputs_count_and_a_note(nb_path: Path) -> None:
    server = build_server(Settings(path=nb_path, timeout=60))
    async with Client(server) as c:
        await c.call_tool("execute_code", {"code": "1"})  # the kernel is ready: the cell starts at once
        source = "import time\nprint('before the cancel', flush=True)\ntime.sleep(60)\nprint('never')"
        await c.call_tool("insert_cell", {"cell_index": 0, "cell_type": "code", "cell_source": source})
        with anyio.move_on_after(1.5):
            await c.call_tool("execute_cell", {"cell_index": 0})
            raise AssertionError("the cell should still be running")
        # The server interrupts the cell and saves what it printed; poll the file until it has.
        cell: Any = None
        with anyio.fail_after(20):
            while True:
                cell = read_nb(nb_path).cells[0]
                if any(CANCELLED_NOTE in o.get("text", "") for o in cell.outputs):
                    break
                await anyio.sleep(0.1)
        texts = "".join(o.get("text", "") for o in cell.outputs)
        assert "before the cancel" in texts and "never" not in texts
        assert cell.execution_count is not None
        # The kernel was interrupted, not left sleeping: the next call runs at once.
        with anyio.fail_after(10):
            r = await c.call_tool("execute_code", {"code": "print('next')"})
        assert "next" in text_of(r)


@pytest.mark.timeout(180)
def test_queued_edits_stop_within_a_second_of_stdin_closing(nb_path: Path) -> None:
    server = RawStdio(nb_path)
    server.handshake()
    rid = server.send("tools/call", {"name": "append_markdown_cell", "arguments": {"cell_source": "first"}})
    server.response(rid)
    sent = 300
    for k in range(sent):
        server.send("tools/call", {"name": "append_markdown_cell", "arguments": {"cell_source": f"queued {k}"}})
    assert server.proc.stdin is not None
    server.proc.stdin.close()  # the client went away with its requests queued
    server.proc.stdin = None  # already closed: close() must not flush it
    left = time.monotonic()
    time.sleep(1.0)
    applied = len(read_nb(nb_path).cells)
    time.sleep(4.0)
    assert len(read_nb(nb_path).cells) == applied, "edits went on after the client left"
    assert applied < sent + 1
    server.close()  # and the server exited
    print(f"{applied - 1} of {sent} queued edits applied; exit {time.monotonic() - left:.1f} s after stdin closed")
