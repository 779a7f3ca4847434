"""Issue 22, item 6: the live notebook view inside the chat, as an MCP App.

In memory (the official MCP client): the `ui://` resource is listed (to a client that renders apps)
and reads back as the app's HTML, the execution and read tools name it in `_meta.ui`, the app-only
view_notebook is listed only to a client that renders apps and answers with the rendered cells.

In a real browser: the specification's reference host library (AppBridge from
@modelcontextprotocol/ext-apps, with the MCP SDK's client), bundled into a page, connects to a real
nbmcp over streamable HTTP, loads the resource into a sandboxed frame, and the app shows the
notebook's cells, the running cell's outputs as they stream and the cell the tool ran.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import nbformat
import pytest
from mcp import Client
from mcp.client.extension import ClientExtension

from nbmcp.config import Settings
from nbmcp.server.app import build_server
from nbmcp.server.mcp_app import APP_LINKED_TOOLS, APP_MIME_TYPE, APP_TOOL, APP_URI
from nbmcp.server.tools import ALL_TOOLS, WORKSPACE_TOOLS

from .conftest import text_of
from .test_http import ServerProcess
from .viewing import chromium

HOST_DIR = Path(__file__).parent / "app_host"

MD_MARKER = "md-marker-5f1c"
OUT_MARKER = "out-marker-9a2e"
FIRST = "first-line-3d7b"
SECOND = "second-line-c41f"
#: An HTML output whose script would write into its document if it ran.
HOSTILE_HTML = "<b>html output</b><script>document.body.append('SCRIPT RAN')</script>"


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
            outputs=[
                nbformat.v4.new_output("stream", name="stdout", text=f"{OUT_MARKER}\n"),
                nbformat.v4.new_output(
                    "error", ename="ValueError", evalue="bad", traceback=["\x1b[0;31mValueError\x1b[0m: bad"]
                ),
            ],
        ),
    ]
    nbformat.write(nb, path)


@pytest.mark.anyio
async def test_the_resource_is_listed_and_reads_back_as_the_app(nb_path: Path) -> None:
    write_notebook(nb_path)
    async with Client(build_server(Settings(path=nb_path, timeout=60)), extensions=[RendersApps()]) as client:
        listed = {str(r.uri): r for r in (await client.list_resources()).resources}
        assert APP_URI in listed
        assert listed[APP_URI].mime_type == "text/html;profile=mcp-app" == APP_MIME_TYPE
        contents = (await client.read_resource(APP_URI)).contents
        assert len(contents) == 1 and contents[0].mime_type == APP_MIME_TYPE
        # No network for the app (an empty CSP allow-list), and a border around it.
        assert contents[0].meta == {"ui": {"csp": {}, "prefersBorder": True}}
        page = contents[0].text  # type: ignore[union-attr]
        assert page.startswith("<!DOCTYPE html>") and "ui/initialize" in page and "view_notebook" in page
        # Self-contained: nothing is fetched from a network.
        assert "http://" not in page.replace("http-equiv", "") and "https://" not in page
        assert "<script src" not in page and "<link" not in page
    async with Client(build_server(Settings(path=nb_path, timeout=60))) as client:
        # A client that does not render apps lists the resources it listed before, and may still read it.
        assert APP_URI not in {str(r.uri) for r in (await client.list_resources()).resources}
        assert (await client.read_resource(APP_URI)).contents[0].text == page  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_the_tools_name_the_app_and_their_answers_do_not_change(nb_path: Path) -> None:
    write_notebook(nb_path)
    async with Client(build_server(Settings(path=nb_path, timeout=60, kernel_at_open=False))) as client:
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


@pytest.mark.anyio
async def test_view_notebook_is_for_apps_and_answers_with_rendered_cells(nb_path: Path) -> None:
    write_notebook(nb_path)
    server = build_server(Settings(path=nb_path, timeout=60, kernel_at_open=False))
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
        assert '<span class="ansi-red-fg">ValueError</span>' in second["html"]  # the traceback keeps its colours
        # The app says what it has: an unchanged notebook is answered without cells.
        again = (
            await client.call_tool(APP_TOOL, {"known": [first["hash"]], "state": view["state"]})
        ).structured_content
        assert again is not None and "cells" not in again and again["state"] == view["state"]
        partial = (await client.call_tool(APP_TOOL, {"known": [first["hash"]]})).structured_content
        assert partial is not None and [c["id"] for c in partial["cells"]] == [second["id"]]
        # The cells the app shows, by id: rendered whatever the state, and without the order it has.
        shows = {"ids": [first["id"], "no-such-id"], "state": view["state"]}
        by_id = (await client.call_tool(APP_TOOL, shows)).structured_content
        assert by_id is not None and "order" not in by_id and [c["id"] for c in by_id["cells"]] == [first["id"]]


#: npm's download cache for the host's packages: in the checkout (git-ignored), never in the user's home.
NPM_CACHE = HOST_DIR / ".npm-cache"


def _run(*args: str, cwd: Path) -> None:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, f"{' '.join(args)} failed in {cwd}:\n{done.stdout}\n{done.stderr}"


@pytest.fixture
def host_bundle(tmp_path: Path) -> Path:
    """The test host (tests/app_host/host.js with AppBridge and the MCP client) bundled for the browser."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is needed for the MCP Apps host test (Debian: apt-get install nodejs npm)")
    if not (HOST_DIR / "node_modules" / "@modelcontextprotocol" / "ext-apps").is_dir():
        # .ci/run does this beforehand. npm's cache goes beside node_modules, not into ~/.npm.
        _run("npm", "ci", "--no-audit", "--no-fund", "--cache", str(NPM_CACHE), cwd=HOST_DIR)
    bundle = tmp_path / "host.bundle.js"
    esbuild = HOST_DIR / "node_modules" / ".bin" / "esbuild"
    _run(
        str(esbuild), "host.js", "--bundle", "--format=esm", "--log-level=warning", f"--outfile={bundle}", cwd=HOST_DIR
    )
    return bundle


@contextlib.asynccontextmanager
async def hosted_app(
    nb_path: Path, host_bundle: Path, browser: Any, tool: str, args: dict[str, Any]
) -> AsyncIterator[Any]:
    """A real nbmcp over HTTP and the test host in a page, which has called `tool`: yields the page."""
    server = await anyio.to_thread.run_sync(ServerProcess, nb_path)
    try:
        page = await browser.new_page()
        # The host page is served on nbmcp's own origin (as a chat's page talks to its own back end), so
        # the MCP client's requests to /mcp pass nbmcp's Origin check without any CORS.
        files = {
            "index.html": (
                "text/html",
                '<!DOCTYPE html><html><body><script type="module" src="host.js"></script></body></html>',
            ),
            "host.js": ("text/javascript", host_bundle.read_text()),
        }

        async def serve(route: Any) -> None:
            name = route.request.url.split("?")[0].rsplit("/", 1)[-1]
            mime, body = files[name]
            await route.fulfill(status=200, content_type=mime, body=body)

        await page.route(f"{server.url}/apphost/*", serve)
        query = urllib.parse.urlencode({"tool": tool, "args": json.dumps(args)})
        await page.goto(f"{server.url}/apphost/index.html?{query}")
        try:
            await page.wait_for_function("window.hostState !== undefined", timeout=150_000)
            assert await page.evaluate("window.hostState") == "ready"
            yield page
        except Exception:
            print("host log:", *await page.evaluate("window.hostLog || []"), sep="\n  ")
            print("server log:", server.log()[-4000:])
            raise
    finally:
        await anyio.to_thread.run_sync(server.stop)


@pytest.mark.anyio
@pytest.mark.timeout(240)
async def test_the_reference_host_renders_the_app_in_a_browser(nb_path: Path, host_bundle: Path) -> None:
    nb = nbformat.v4.new_notebook()
    html_output = nbformat.v4.new_output("display_data", data={"text/html": HOSTILE_HTML})
    nb.cells = [
        nbformat.v4.new_markdown_cell(f"# Title\n\nsome *markdown* {MD_MARKER}"),
        nbformat.v4.new_code_cell("display(HTML(...))", execution_count=1, outputs=[html_output]),
    ]
    nbformat.write(nb, nb_path)
    # The source spells the marker in two halves: only the output holds it whole.
    args = {"cell_source": f"print({OUT_MARKER[:4]!r} + {OUT_MARKER[4:]!r})"}
    async with (
        chromium() as browser,
        hosted_app(nb_path, host_bundle, browser, "append_execute_code_cell", args) as page,
    ):
        cells = page.frame_locator("#app").locator("main#cells")
        # The markdown cell rendered as HTML, the new code cell with its output, and the cell the tool ran.
        await cells.locator("section.cell em", has_text="markdown").wait_for(timeout=30_000)
        await cells.locator("section.cell .outputs", has_text=OUT_MARKER).wait_for(timeout=30_000)
        text = await cells.inner_text()
        assert MD_MARKER in text and OUT_MARKER in text
        # An HTML output is shown in its own sandboxed frame, and its script does not run there.
        output = page.frame_locator("#app").frame_locator("iframe.html-output").locator("body")
        await output.locator("b", has_text="html output").wait_for(timeout=10_000)
        assert "SCRIPT RAN" not in await output.inner_text()
        await cells.locator("section.cell.last[data-badge*='append_execute_code_cell']").wait_for(timeout=10_000)
        # A cell that prints, sleeps and prints again: the app shows it running with its first line
        # before it finishes (its outputs come from the running execution, not from the file).
        first, second = f"{FIRST[:4]!r} + {FIRST[4:]!r}", f"{SECOND[:4]!r} + {SECOND[4:]!r}"
        slow = f"import time\nprint({first})\ntime.sleep(4)\nprint({second})"
        await page.evaluate(
            "(source) => { window.slowRun = runTool('append_execute_code_cell', {cell_source: source}) }", slow
        )
        running = cells.locator("section.cell.running .outputs", has_text=FIRST)
        await running.wait_for(timeout=15_000)
        assert SECOND not in await running.inner_text()
        assert await page.evaluate("window.slowRun") is True
        await cells.locator("section.cell:not(.running) .outputs", has_text=SECOND).wait_for(timeout=15_000)


@pytest.mark.anyio
@pytest.mark.timeout(240)
async def test_the_app_shows_a_long_notebook_as_it_is_scrolled(nb_path: Path, host_bundle: Path) -> None:
    count = 5000
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(f"cell **{i}** of the long notebook") for i in range(count)]
    nbformat.write(nb, nb_path)
    async with chromium() as browser, hosted_app(nb_path, host_bundle, browser, "read_notebook", {}) as page:
        cells = page.frame_locator("#app").locator("main#cells")
        await cells.locator("section.cell strong", has_text="0").first.wait_for(timeout=30_000)
        assert await cells.locator("section.cell").count() == count
        # Only the cells near the app's box were asked for: the last one is a placeholder until scrolled to.
        last = cells.locator("section.cell").last
        assert "pending" in (await last.get_attribute("class") or "")
        await cells.evaluate("main => { main.scrollTop = main.scrollHeight }")
        await last.locator("strong", has_text=str(count - 1)).wait_for(timeout=15_000)
