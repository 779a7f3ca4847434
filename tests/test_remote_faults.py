"""A frozen Jupyter server (SIGSTOP; issue 13): a call is answered within its timeout plus a few seconds,
naming the server. A real `jupyter server` on loopback of its own, resumed (SIGCONT) in teardown."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator

import anyio
import pytest
from mcp import Client

from nbmcp.config import settings_from_env
from nbmcp.kernels.remote import CONTROL_TIMEOUT
from nbmcp.server.app import build_server

from .conftest import text_of
from .test_faults import STUBBORN, Background
from .test_remote import Jupyter, jupyter  # noqa: F401  (the fixture: a server for this module alone)

pytestmark = pytest.mark.anyio


@pytest.fixture
def freeze(jupyter: Jupyter) -> Iterator[Callable[[], None]]:  # noqa: F811  (the fixture imported above)
    """Stops the server process when called; it is always resumed afterwards."""
    yield lambda: os.kill(jupyter.proc.pid, signal.SIGSTOP)
    os.kill(jupyter.proc.pid, signal.SIGCONT)


async def test_a_frozen_server_is_reported_within_the_timeout_plus_seconds(
    jupyter: Jupyter,  # noqa: F811
    freeze: Callable[[], None],
) -> None:
    server = build_server(settings_from_env(jupyter.env("frozen.ipynb"), timeout=60))
    async with Client(server) as c:
        r = await c.call_tool("execute_code", {"code": "print('before the freeze')"})
        assert not r.is_error and "before the freeze" in text_of(r), text_of(r)
        freeze()
        try:
            timeout = 5.0
            started = time.monotonic()
            with anyio.fail_after(120):
                r = await c.call_tool("execute_code", {"code": "print('frozen?')", "timeout_seconds": timeout})
            took = time.monotonic() - started
            print(f"frozen server reported after {took:.1f} s (timeout {timeout:g} s)")
            assert jupyter.url in text_of(r) and "stopped answering" in text_of(r), text_of(r)
            # The timeout, a liveness check and the interrupt request, each bounded; margin for a busy machine.
            assert took < timeout + 2 * CONTROL_TIMEOUT + 10
        finally:
            os.kill(jupyter.proc.pid, signal.SIGCONT)
        # Once the server is back, the next call reconnects and runs.
        with anyio.fail_after(120):
            r = await c.call_tool("execute_code", {"code": "print('after the thaw')"})
        assert "after the thaw" in text_of(r), text_of(r)


async def test_restart_rescues_a_stubborn_cell_on_the_server(jupyter: Jupyter) -> None:  # noqa: F811
    server = build_server(settings_from_env(jupyter.env("stubborn.ipynb"), timeout=300))
    async with Client(server) as c:
        run = Background()
        async with anyio.create_task_group() as tg:
            tg.start_soon(run.call, c, "execute_code", {"code": STUBBORN})
            with anyio.fail_after(60):
                await run.started.wait()
            asked = time.monotonic()
            with anyio.fail_after(60):
                r = await c.call_tool("restart_kernel", {})
            assert not r.is_error, text_of(r)
        assert run.answered_at is not None
        print(f"remote: the running call answered {run.answered_at - asked:.1f} s after restart_kernel")
        assert run.answered_at - asked < 20, "the running call waited for its timeout"
        assert "restart_kernel" in text_of(run.result) and "started" in text_of(run.result)
        r = await c.call_tool("execute_code", {"code": "print('fresh kernel')"})
        assert "fresh kernel" in text_of(r)
