"""Issue 22, item 6: the live notebook view inside the chat, as an MCP App.

In memory (the official MCP client): the `ui://` resource is listed and reads back as the app's HTML,
the execution and read tools name it in `_meta.ui`, the app-only view_notebook is listed only to a
client that renders apps and answers with the rendered cells. In a real browser: the specification's
reference host library (AppBridge from @modelcontextprotocol/ext-apps, with the MCP SDK's client),
bundled into a page, connects to a real nbmcp over streamable HTTP, loads the resource into a sandboxed
frame and the app shows the notebook's cells.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import pytest
from mcp import Client
from mcp.client.extension import ClientExtension

from nbmcp.config import Settings
from nbmcp.server.app import build_server
from nbmcp.server.mcp_app import APP_LINKED_TOOLS, APP_MIME_TYPE, APP_TOOL, APP_URI
from nbmcp.server.tools import ALL_TOOLS, WORKSPACE_TOOLS

from .conftest import text_of

pytestmark = pytest.mark.anyio

MD_MARKER = "md-marker-5f1c"
OUT_MARKER = "out-marker-9a2e"


class RendersApps(ClientExtension):
    """What a host that renders MCP Apps advertises (the extension and its MIME type)."""

    identifier = "io.modelcontextprotocol/ui"

    def settings(self) -> dict[str, Any]:
        return {"mimeTypes": [APP_MIME_TYPE]}


def write_notebook(path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell(f"# Title\n\nsome *markdown* {MD_MARKER}"),
        nbformat.v4.new_code_cell(
            f"print('{OUT_MARKER}')",
            execution_count=1,
            outputs=[nbformat.v4.new_output("stream", name="stdout", text=f"{OUT_MARKER}\n")],
        ),
    ]
    nbformat.write(nb, path)


async def test_the_resource_is_listed_and_reads_back_as_the_app(nb_path: Path) -> None:
    write_notebook(nb_path)
    async with Client(build_server(Settings(path=nb_path, timeout=60))) as client:
        listed = {str(r.uri): r for r in (await client.list_resources()).resources}
        assert APP_URI in listed
        assert listed[APP_URI].mime_type == "text/html;profile=mcp-app" == APP_MIME_TYPE
        contents = (await client.read_resource(APP_URI)).contents
        assert len(contents) == 1 and contents[0].mime_type == APP_MIME_TYPE
        page = contents[0].text  # type: ignore[union-attr]
        assert page.startswith("<!DOCTYPE html>") and "ui/initialize" in page and "view_notebook" in page
        # Self-contained: nothing is fetched from a network.
        assert "http://" not in page.replace("http-equiv", "") and "https://" not in page
        assert "<script src" not in page and "<link" not in page


async def test_the_tools_name_the_app_and_their_answers_do_not_change(nb_path: Path) -> None:
    write_notebook(nb_path)
    async with Client(build_server(Settings(path=nb_path, timeout=60))) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        # A client that does not render apps lists the same tools as before: no app-only tool.
        assert set(tools) == set(ALL_TOOLS) - set(WORKSPACE_TOOLS)
        for name in ("execute_cell", "append_execute_code_cell", "execute_code", "read_cell", "read_notebook"):
            assert name in APP_LINKED_TOOLS
        for name, tool in tools.items():
            meta = tool.meta or {}
            if name in APP_LINKED_TOOLS:
                assert meta.get("ui") == {"resourceUri": APP_URI}, name
            else:
                assert "ui" not in meta, name
        answer = await client.call_tool("read_cell", {"cell_index": 1})
        assert not answer.is_error and OUT_MARKER in text_of(answer)


async def test_view_notebook_is_for_apps_and_answers_with_rendered_cells(nb_path: Path) -> None:
    write_notebook(nb_path)
    server = build_server(Settings(path=nb_path, timeout=60))
    async with Client(server, extensions=[RendersApps()]) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert tools[APP_TOOL].meta == {"ui": {"resourceUri": APP_URI, "visibility": ["app"]}}
        result = await client.call_tool(APP_TOOL, {})
        assert not result.is_error, text_of(result)
        view = result.structured_content
        assert view is not None and view["name"] == "notebook.ipynb" and view["count"] == 2
        assert view["running"] is None and view["more"] is False
        cells = {c["id"]: c for c in view["cells"]}
        assert list(cells) == view["order"]
        first, second = (cells[i] for i in view["order"])
        assert first["type"] == "markdown" and "<em>markdown</em>" in first["html"] and MD_MARKER in first["html"]
        assert second["type"] == "code" and OUT_MARKER in second["html"] and "[1]:" in second["html"]
        # The app says what it has: an unchanged notebook is answered without cells.
        again = (
            await client.call_tool(APP_TOOL, {"known": [first["hash"]], "state": view["state"]})
        ).structured_content
        assert again is not None and "cells" not in again and again["state"] == view["state"]
        partial = (await client.call_tool(APP_TOOL, {"known": [first["hash"]]})).structured_content
        assert partial is not None and [c["id"] for c in partial["cells"]] == [second["id"]]
