"""The files in examples/ are what a user copies: they must be valid and the demo must run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from mcp import Client

from nbmcp.config import Settings
from nbmcp.server import build_server

from .conftest import read_nb, text_of

EXAMPLES = Path(__file__).parent.parent / "examples"


@pytest.mark.parametrize("name", ["claude_desktop_config.json", ".vscode/mcp.json", ".cursor/mcp.json"])
def test_client_configurations_start_nbmcp(name: str) -> None:
    config = json.loads((EXAMPLES / name).read_text())
    servers = config.get("mcpServers") or config["servers"]
    entry = servers["notebook"]
    assert entry["command"] == "uvx"
    assert entry["args"][:3] == ["--from", "/path/to/nbmcp-checkout", "nbmcp"]
    assert entry["args"][3].endswith(".ipynb")


@pytest.mark.anyio
async def test_demo_notebook_runs_cell_by_cell(tmp_path: Path) -> None:
    path = tmp_path / "work" / "demo.ipynb"
    shutil.copy(EXAMPLES / "demo.ipynb", path)
    code_cells = [i for i, c in enumerate(read_nb(path).cells) if c.cell_type == "code"]
    async with Client(build_server(Settings(path=path, timeout=60))) as client:
        for i in code_cells:
            r = await client.call_tool("execute_cell_simple_timeout", {"cell_index": i})
            assert r.structured_content["status"] == "ok", text_of(r)
    nb = read_nb(path)
    assert "mean=" in nb.cells[code_cells[1]].outputs[0].text
