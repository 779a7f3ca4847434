"""The far side drops the kernel's websocket or restarts (issue 25): nbmcp notices and reconnects.

A real `jupyter server` on loopback per test (restarted on the same port and folder), and a TCP relay
between nbmcp and the server standing in for a proxy or a network that drops connections: cutting
it closes the websocket while the kernel lives on, which the server offers no way to do on its own.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from nbmcp.config import settings_from_env
from nbmcp.kernels import channels
from nbmcp.server.app import build_server

from .conftest import text_of
from .test_faults import Background
from .test_remote import TOKEN, Jupyter, launch_jupyter

pytestmark = pytest.mark.anyio

LOST = "variables defined before are gone"


class Relay:
    """A loopback TCP relay to `port`; `cut()` closes every connection through it (new ones still work),
    `swallow()` drops what is sent on the open ones from then on (a connection that is dying)."""

    def __init__(self, port: int) -> None:
        self.upstream = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self._open: list[socket.socket] = []
        self._swallowed: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            try:
                server = socket.create_connection(("127.0.0.1", self.upstream))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open += [client, server]
            threading.Thread(target=self._pipe, args=(client, server), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                if src not in self._swallowed:
                    dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def swallow(self) -> None:
        with self._lock:
            self._swallowed = set(self._open)

    def cut(self) -> None:
        with self._lock:
            conns, self._open = self._open, []
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self.cut()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Jupyter]:
    (tmp_path / "root").mkdir()
    (tmp_path / "home").mkdir()
    s = launch_jupyter(tmp_path / "root", tmp_path / "home")
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def relay(server: Jupyter) -> Iterator[Relay]:
    r = Relay(int(server.url.rsplit(":", 1)[1]))
    try:
        yield r
    finally:
        r.close()


async def run(c: Client, code: str) -> str:
    with anyio.fail_after(90):
        r = await c.call_tool("execute_code", {"code": code})
    assert not r.is_error, text_of(r)
    return text_of(r)


async def kernel_state(c: Client, *, becomes: str) -> str:
    """The kernel's state in get_notebook_info, once it is `becomes` (or after 15 s)."""
    with anyio.move_on_after(15):
        while True:
            info: Any = (await c.call_tool("get_notebook_info", {})).structured_content
            if info["kernel"]["state"] == becomes:
                break
            await anyio.sleep(0.1)
    return str(info["kernel"]["state"])


async def test_a_restarted_server_gives_a_new_kernel_and_the_answer_says_the_variables_are_gone(
    server: Jupyter, tmp_path: Path
) -> None:
    # A local notebook, so that get_notebook_info answers while the server is down.
    env = {"RUNTIME_URL": server.url, "RUNTIME_TOKEN": TOKEN}
    async with Client(
        build_server(settings_from_env(env, path=str(tmp_path / "restart.ipynb"), timeout=60, structured_output=True))
    ) as c:
        await run(c, "x = 41")
        port = int(server.url.rsplit(":", 1)[1])
        server.stop()
        # The websocket closed with the server: reported as such, not "busy" or "idle".
        assert await kernel_state(c, becomes="disconnected") == "disconnected"
        again = launch_jupyter(server.root, server.log.parent, port)
        try:
            out = await run(c, "print('x' in globals())")
            assert "False" in out and LOST in out, out
            out = await run(c, "x = 1\nprint(x + 1)")
            assert "2" in out and LOST not in out, out  # said once
            assert await kernel_state(c, becomes="idle") == "idle"
        finally:
            again.stop()


async def test_a_dropped_websocket_between_calls_reconnects_to_the_same_kernel(server: Jupyter, relay: Relay) -> None:
    env = server.env("drop.ipynb") | {"RUNTIME_URL": f"http://127.0.0.1:{relay.port}"}
    async with Client(build_server(settings_from_env(env, timeout=60, structured_output=True))) as c:
        await run(c, "x = 41")
        relay.cut()
        assert await kernel_state(c, becomes="disconnected") == "disconnected"
        out = await run(c, "print(x + 1)")
        assert "42" in out and LOST not in out, out
        assert await kernel_state(c, becomes="idle") == "idle"


async def test_a_websocket_dropped_while_code_runs_is_reconnected_without_losing_output(
    server: Jupyter, relay: Relay
) -> None:
    env = server.env("midrun.ipynb") | {"RUNTIME_URL": f"http://127.0.0.1:{relay.port}"}
    async with Client(build_server(settings_from_env(env, timeout=60, structured_output=True))) as c:
        await run(c, "x = 41")
        call = Background()
        code = "import time\nprint('started', flush=True)\ntime.sleep(3)\nprint('after the drop', x + 1)"
        async with anyio.create_task_group() as tg:
            tg.start_soon(call.call, c, "execute_code", {"code": code})
            with anyio.fail_after(60):
                await call.started.wait()
            relay.cut()  # while the kernel sleeps: its last output is sent while nobody is connected
        out = text_of(call.result)
        assert not call.result.is_error and "started" in out and "after the drop 42" in out, out
        assert "died" not in out and LOST not in out, out
        assert await kernel_state(c, becomes="idle") == "idle"


async def test_code_sent_into_a_dying_websocket_is_sent_again_once(server: Jupyter, relay: Relay) -> None:
    env = server.env("dying.ipynb") | {"RUNTIME_URL": f"http://127.0.0.1:{relay.port}"}
    async with Client(build_server(settings_from_env(env, timeout=30, structured_output=True))) as c:
        await run(c, "x = 41")
        relay.swallow()  # the execute_request is written, and never reaches the server
        answer: dict[str, str] = {}

        async def execute() -> None:
            answer["text"] = await run(c, "print('ran', x + 1)")

        async with anyio.create_task_group() as tg:
            tg.start_soon(execute)
            await anyio.sleep(1)
            relay.cut()
        assert answer["text"].count("ran 42") == 1 and "timed out" not in answer["text"], answer["text"]


async def test_a_server_restarted_while_code_runs_answers_and_the_next_calls_recover(
    server: Jupyter, tmp_path: Path
) -> None:
    env = {"RUNTIME_URL": server.url, "RUNTIME_TOKEN": TOKEN}
    async with Client(
        build_server(settings_from_env(env, path=str(tmp_path / "mid.ipynb"), timeout=60, structured_output=True))
    ) as c:
        await run(c, "x = 41")
        call = Background()
        code = "import time\nprint('started', flush=True)\ntime.sleep(30)"
        async with anyio.create_task_group() as tg:
            tg.start_soon(call.call, c, "execute_code", {"code": code})
            with anyio.fail_after(60):
                await call.started.wait()
            server.stop()
        out = text_of(call.result)
        assert "started" in out and server.url in out, out  # answered at once, naming the server
        # While the server is down: a clear error, never a state only restart_kernel clears.
        with anyio.fail_after(60):
            r = await c.call_tool("execute_code", {"code": "1"})
        assert r.is_error and "cannot reach" in text_of(r), text_of(r)
        again = launch_jupyter(server.root, server.log.parent, int(server.url.rsplit(":", 1)[1]))
        try:
            out = await run(c, "print('x' in globals())")
            assert "False" in out and LOST in out, out
        finally:
            again.stop()


async def test_a_link_that_dies_without_closing_is_noticed_by_its_pings(
    server: Jupyter, relay: Relay, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(channels, "PING_INTERVAL", 0.5)
    monkeypatch.setattr(channels, "PING_TIMEOUT", 0.5)
    env = server.env("silent.ipynb") | {"RUNTIME_URL": f"http://127.0.0.1:{relay.port}"}
    async with Client(build_server(settings_from_env(env, timeout=60, structured_output=True))) as c:
        await run(c, "x = 41")
        relay.swallow()  # nothing passes any more, and nothing is closed: a NAT or proxy that forgot us
        assert await kernel_state(c, becomes="disconnected") == "disconnected"
        out = await run(c, "print(x + 1)")
        assert "42" in out and LOST not in out, out
