"""The MCP logging capability: nbmcp's log records reach clients at or above the level they chose."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import anyio
import httpx2
import nbformat
import pytest
from mcp import Client
from mcp.types import LOG_LEVEL_META_KEY

from nbmcp.config import Settings
from nbmcp.server.app import create_server

from .test_http import ServerProcess

pytestmark = pytest.mark.anyio


async def _legacy_client_hears(nb_path: Path, level: str | None) -> list[Any]:
    server, workspace = create_server(Settings(path=nb_path, timeout=60))
    host = workspace.default
    assert host is not None
    logs: list[Any] = []

    async def on_log(params: Any) -> None:
        logs.append(params)

    async with Client(server, mode="legacy", logging_callback=on_log) as client:
        if level is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # logging/setLevel is the handshake era's API
                await client.set_logging_level(level)  # type: ignore[arg-type]
        await client.call_tool("append_markdown_cell", {"cell_source": "first"})
        with anyio.fail_after(10):
            await host.watcher_ready.wait()
        nb = nbformat.read(nb_path, 4)
        nb.cells.append(nbformat.v4.new_markdown_cell("external"))
        nbformat.write(nb, nb_path)  # an editor saves: nbmcp reloads and logs it (info)
        # The watcher reports within about 0.1 s; the log message follows on the event loop.
        await anyio.sleep(2)
        assert host.external_changes == 1
        # A kernel that dies while running code is a warning, logged during the call.
        r = await client.call_tool("execute_code", {"code": "import os; os._exit(1)"})
        assert not r.is_error
    return logs


async def test_a_handshake_client_hears_reloads_at_info_and_only_warnings_after_set_level(nb_path: Path) -> None:
    logs = await _legacy_client_hears(nb_path, None)
    messages = [str(p.data) for p in logs]
    assert any("changed on disk; reloaded" in m for m in messages), messages
    assert any(p.level == "warning" and "died" in str(p.data) for p in logs), messages
    assert all(p.logger and p.logger.startswith("nbmcp") for p in logs)

    nb_path.unlink()
    logs = await _legacy_client_hears(nb_path, "warning")
    assert logs and all(p.level in ("warning", "error", "critical") for p in logs), logs
    assert any("died" in str(p.data) for p in logs)


async def test_a_2026_client_gets_the_records_of_its_own_call_when_it_asks(nb_path: Path) -> None:
    server, _ = create_server(Settings(path=nb_path, timeout=60))
    logs: list[Any] = []

    async def on_log(params: Any) -> None:
        logs.append(params)

    async with Client(server, logging_callback=on_log) as client:
        await client.call_tool("execute_code", {"code": "1"})
        await client.call_tool("execute_code", {"code": "import os; os._exit(1)"})
        assert logs == []  # no opt-in in the request: nothing is sent
        meta: Any = {LOG_LEVEL_META_KEY: "warning"}
        await client.call_tool("execute_code", {"code": "import os; os._exit(1)"}, meta=meta)
    assert [p.level for p in logs] == ["warning"] and "died" in str(logs[0].data)


def _post(url: str, body: dict[str, Any], session: str | None = None) -> httpx2.Response:
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    if session:
        headers |= {"mcp-session-id": session, "mcp-protocol-version": "2025-06-18"}
    return httpx2.post(f"{url}/mcp", json=body, headers=headers, timeout=10)


def _result(response: httpx2.Response) -> Any:
    text = response.text
    data = next((line[5:] for line in text.splitlines() if line.startswith("data:")), text)
    return json.loads(data)


def test_logging_set_level_over_real_http(nb_path: Path) -> None:
    # What the MCP conformance scenario `logging-set-level` checks, against a real server process.
    server = ServerProcess(nb_path)
    try:
        init = _post(
            server.url,
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-06-18",
                    "capabilities": {},
                    "clientInfo": {"name": "t", "version": "0"},
                },
            },
        )
        assert _result(init)["result"]["capabilities"]["logging"] == {}
        session = init.headers.get("mcp-session-id")
        _post(server.url, {"jsonrpc": "2.0", "method": "notifications/initialized"}, session)
        answer = _post(
            server.url, {"jsonrpc": "2.0", "id": 2, "method": "logging/setLevel", "params": {"level": "info"}}, session
        )
        assert _result(answer) == {"jsonrpc": "2.0", "id": 2, "result": {}}
        bad = _post(
            server.url, {"jsonrpc": "2.0", "id": 3, "method": "logging/setLevel", "params": {"level": "loud"}}, session
        )
        assert "error" in _result(bad)
    finally:
        server.stop()
