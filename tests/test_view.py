"""The live view in a real browser (headless Chromium): what it shows, how it follows changes, what it refuses."""

from __future__ import annotations

import asyncio
import base64
import http.client
import os
import time
import uuid
from pathlib import Path

import nbformat
import pytest
from mcp import Client
from nbformat.v4 import new_code_cell, new_markdown_cell, new_output

from nbmcp.config import Settings
from nbmcp.server.app import create_server

from .viewing import chromium, open_view, png, serving, until, write_nb

pytestmark = pytest.mark.anyio

RED_TRACEBACK = [
    "\x1b[0;31m---------------------------------------------------------------------------\x1b[0m",
    "\x1b[0;31mZeroDivisionError\x1b[0m                         Traceback (most recent call last)",
    "Cell \x1b[0;32mIn[2], line 1\x1b[0m\n"
    "\x1b[0;32m----> 1\x1b[0m \x1b[38;5;241m1\x1b[39m\x1b[38;5;241m/\x1b[39m\x1b[38;5;241m0\x1b[39m",
    "\x1b[0;31mZeroDivisionError\x1b[0m: division by zero",
]


def showcase(path: Path, *more: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A notebook with what a person expects to see: markdown, code, a table, an error, an image, HTML."""
    image = base64.b64encode(png()).decode()
    return write_nb(
        path,
        new_markdown_cell(
            "# Sales report\n\nThe assistant loads the data, checks it and plots it.\n\n"
            "| region | sales |\n|---|---|\n| north | 120 |\n| south | 95 |\n\nMath stays as written: $e^{i\\pi} = -1$"
        ),
        new_code_cell(
            "import math\nfor region in ['north', 'south']:\n    print(region, math.sqrt(120))",
            execution_count=1,
            outputs=[new_output("stream", name="stdout", text="north 10.95\nsouth 10.95\n")],
        ),
        new_code_cell(
            "1/0",
            execution_count=2,
            outputs=[
                new_output("error", ename="ZeroDivisionError", evalue="division by zero", traceback=RED_TRACEBACK)
            ],
        ),
        new_code_cell(
            "plot(sales)",
            execution_count=3,
            outputs=[new_output("display_data", data={"image/png": image, "text/plain": "<Figure>"})],
        ),
        new_code_cell(
            "table.to_html()",
            execution_count=4,
            outputs=[
                new_output(
                    "execute_result",
                    execution_count=4,
                    data={
                        "text/html": "<table border=1><tr><th>region</th><th>sales</th></tr>"
                        "<tr><td>north</td><td>120</td></tr></table>",
                        "text/plain": "region sales",
                    },
                )
            ],
        ),
        new_code_cell(
            "sales.describe()",
            execution_count=5,
            outputs=[
                new_output("execute_result", execution_count=5, data={"application/json": {"count": 2, "mean": 107.5}}),
            ],
        ),
        *more,
    )


async def test_the_view_shows_markdown_code_errors_images_and_html(nb_path: Path) -> None:
    showcase(nb_path)
    async with serving(nb_path) as (_, url), chromium() as browser:
        page = await open_view(browser, url)
        assert await page.locator("section.cell").count() == 6
        assert await page.locator(".markdown h1").inner_text() == "Sales report"
        assert await page.locator(".markdown td").count() == 4
        assert "$e^{i\\pi} = -1$" in await page.locator(".markdown").first.inner_text()
        # Code: highlighted (Pygments) with its execution count.
        assert await page.locator("section.cell .prompt.in").first.inner_text() == "[1]:"
        assert await page.locator(".source .highlight .k").count() >= 1  # `import`, `for`: keywords
        assert "north 10.95" in await page.locator("pre.stdout").inner_text()
        # The error keeps its ANSI colours, as JupyterLab shows them.
        assert await page.locator("pre.traceback .ansi-red-fg").count() >= 1
        assert "division by zero" in await page.locator("pre.traceback").inner_text()
        # The image is decoded (the CSP lets inline images through).
        width = await page.locator("img.image-output").evaluate("img => img.complete && img.naturalWidth")
        assert width == 160
        # HTML output: inside a sandboxed frame, drawn.
        frame = page.frame_locator("iframe.html-output")
        assert await frame.locator("td").first.inner_text() == "north"
        assert "Out[4]:" in await page.locator(".prompt.out").first.inner_text()
        assert '"mean": 107.5' in await page.locator("pre.json").inner_text()


async def test_an_external_change_shows_within_a_second_without_a_reload(nb_path: Path) -> None:
    nb = showcase(nb_path)
    async with serving(nb_path) as (view, url), chromium() as browser:
        page = await open_view(browser, url)
        await asyncio.wait_for(view.feed(None).ready.wait(), 10)  # type: ignore[union-attr]
        await page.evaluate("window.setBeforeTheChange = 42")
        scroll = await page.evaluate("window.scrollTo(0, 200); window.scrollY")
        marker = f"marker-{uuid.uuid4().hex}"
        nb.cells.insert(1, new_markdown_cell(f"Written by another program: {marker}"))
        started = time.monotonic()
        nbformat.write(nb, nb_path)
        await page.get_by_text(marker).wait_for(timeout=5000)
        elapsed = time.monotonic() - started
        assert elapsed < 1.0, f"the change took {elapsed:.2f} s to show"
        # No reload: a value set in the page before the change is still there, and so is the reader.
        assert await page.evaluate("window.setBeforeTheChange") == 42
        assert abs(await page.evaluate("window.scrollY") - scroll) < 120
        ids = await page.eval_on_selector_all("section.cell", "els => els.map(e => e.dataset.id)")
        assert ids == [c.id for c in nb.cells]


async def test_deleted_and_moved_cells_leave_and_move(nb_path: Path) -> None:
    nb = showcase(nb_path)
    async with serving(nb_path) as (view, url), chromium() as browser:
        page = await open_view(browser, url)
        await asyncio.wait_for(view.feed(None).ready.wait(), 10)  # type: ignore[union-attr]
        gone = nb.cells[2].id
        await page.locator(f'section[data-id="{gone}"]').wait_for(state="attached")
        del nb.cells[2]
        nb.cells.append(nb.cells.pop(0))
        nbformat.write(nb, nb_path)
        await page.locator(f'section[data-id="{gone}"]').wait_for(state="detached", timeout=5000)
        await page.locator(f'#cells section:last-child[data-id="{nb.cells[-1].id}"]').wait_for()
        ids = await page.eval_on_selector_all("section.cell", "els => els.map(e => e.dataset.id)")
        assert ids == [c.id for c in nb.cells]


async def test_a_running_cell_shows_its_first_line_before_it_finishes(nb_path: Path) -> None:
    slow = new_code_cell("import time\nprint('first line', flush=True)\ntime.sleep(3)\nprint('second line')")
    last = len(showcase(nb_path, slow).cells) - 1
    server, workspace = create_server(Settings(path=nb_path, timeout=60))
    async with Client(server) as client, serving(nb_path) as (view, url), chromium() as browser:
        view.follow_sessions(workspace.hosts)
        page = await open_view(browser, url)
        await page.check("#follow")  # keep the running cell in view
        call = asyncio.ensure_future(client.call_tool("execute_cell", {"cell_index": last}))
        try:
            cell = page.locator("section.cell.running")
            await cell.locator("pre.stdout", has_text="first line").wait_for(timeout=60_000)
            assert not call.done(), "the cell had finished before its first line was shown"
            assert "second line" not in await cell.locator(".outputs").inner_text()
            badge = await cell.get_attribute("data-badge")
            assert badge is not None and "running" in badge and "execute_cell" in badge
            box = await cell.bounding_box()
            assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= 900, box  # followed
            shot = os.environ.get("NBMCP_SCREENSHOT")
            if shot:  # README's picture: written only when asked for, never into the checkout by a plain run
                await page.screenshot(path=shot)
            result = await call
        finally:
            if not call.done():
                call.cancel()
        assert not result.is_error
        done = page.locator("section.cell").nth(last)
        await done.locator("pre.stdout", has_text="second line").wait_for(timeout=10_000)
        await page.wait_for_selector("section.cell.running", state="detached")
        assert "execute_cell" in (await done.get_attribute("data-badge") or "")


async def test_scripts_in_outputs_never_run_in_the_views_origin(nb_path: Path) -> None:
    attack = "try{top.pwned='%s'}catch(e){};try{parent.document.title='pwned'}catch(e){}"
    svg = (
        '<svg xmlns="http://www.w3.org/2000/svg" width="40" height="40" onload="' + attack % "svg-onload" + '">'
        "<script>" + attack % "svg-script" + '</script><rect width="40" height="40" fill="red"/></svg>'
    )
    write_nb(
        nb_path,
        new_markdown_cell(
            '<img src=x onerror="' + attack % "markdown-img" + '"><script>' + attack % "markdown" + "</script>"
            "<a href=\"javascript:top.pwned='link'\">link</a>"
        ),
        new_code_cell(
            "display(HTML(...))",
            outputs=[
                new_output(
                    "display_data",
                    data={
                        "text/html": "<script>" + attack % "html" + "</script>"
                        '<div style="height:300px">a tall output</div>'
                        '<img src=x onerror="' + attack % "html-img" + '">',
                        "image/svg+xml": svg,
                    },
                ),
                new_output("display_data", data={"image/svg+xml": svg}),
            ],
        ),
    )
    async with serving(nb_path) as (_, url), chromium() as browser:
        page = await open_view(browser, url)
        frame = page.frame_locator("iframe.html-output")
        await frame.get_by_text("a tall output").wait_for()
        # The frame's own resize script (allowed by its hash) ran and sized the frame to its content.
        await until(page, "document.querySelector('iframe.html-output').offsetHeight >= 300")
        await page.locator("img.image-output").wait_for()
        await page.wait_for_timeout(500)
        assert await page.evaluate("window.pwned") is None
        assert "pwned" not in await page.title()
        # The markdown's script and handler were removed, not merely blocked.
        markdown = await page.locator(".markdown").first.inner_html()
        assert "<script" not in markdown and "onerror" not in markdown and "javascript:" not in markdown
        # The frame is sandboxed without allow-same-origin: its origin is opaque, the token out of reach.
        sandbox = await page.locator("iframe.html-output").get_attribute("sandbox")
        assert sandbox == "allow-scripts"
        origin = await page.frames[1].evaluate("() => self.origin")
        assert origin == "null"


def _get(url: str, path: str, **headers: str) -> tuple[int, str]:
    host_port = url.split("/")[2]
    conn = http.client.HTTPConnection(host_port, timeout=10)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, response.read(2000).decode(errors="replace")
    finally:
        conn.close()


async def test_wrong_host_foreign_origin_and_missing_token_are_refused(nb_path: Path) -> None:
    showcase(nb_path)
    async with serving(nb_path, token="view-token-for-tests") as (_, url):
        ok = "/view/?token=view-token-for-tests"

        def get(path: str, **headers: str) -> tuple[int, str]:
            return _get(url, path, **headers)

        status, body = await asyncio.to_thread(get, ok)
        assert status == 200 and "view.js" in body
        assert (await asyncio.to_thread(get, ok, Host="evil.example:80"))[0] == 421
        assert (await asyncio.to_thread(get, ok, Origin="http://evil.example"))[0] == 403
        for path in ("/view/", "/view/?token=wrong", "/view/events", "/view/cells?ids=x", "/view/events?token="):
            status, body = await asyncio.to_thread(get, path)
            assert status == 403 and "token" in body, (path, status, body)
        # The page's own script holds nothing secret; it still gets the Host check.
        assert (await asyncio.to_thread(get, "/view/static/view.js"))[0] == 200
        assert (await asyncio.to_thread(get, "/view/static/view.js", Host="evil.example"))[0] == 421
        assert (await asyncio.to_thread(get, "/view/static/../../etc/passwd"))[0] == 404


async def test_a_folder_lists_its_notebooks_and_opens_each(tmp_path: Path) -> None:
    folder = tmp_path / "work"
    write_nb(folder / "first.ipynb", new_markdown_cell("# First notebook"))
    (folder / "sub").mkdir()
    write_nb(folder / "sub" / "second.ipynb", new_markdown_cell("# Second notebook"))
    async with serving(folder) as (_, url), chromium() as browser:
        page = await browser.new_page()
        await page.goto(url)
        assert await page.locator("li a").all_inner_texts() == ["first.ipynb", "sub/second.ipynb"]
        await page.get_by_text("sub/second.ipynb").click()
        await page.wait_for_selector("body[data-state=live]")
        assert await page.locator(".markdown h1").inner_text() == "Second notebook"
        status, _ = await asyncio.to_thread(_get, url, f"/view/?token={url.split('token=')[1]}&nb=../x.ipynb")
        assert status == 404
