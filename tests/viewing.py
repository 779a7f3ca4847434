"""Helpers for the live view's tests and benchmark: a real headless Chromium and a view on a free port."""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
import tempfile
import zlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import nbformat
import pytest

from nbmcp.session.activity import Activity
from nbmcp.view.app import ViewServer, new_token
from nbmcp.view.serve import bind, serve_view, url_host

#: Debian's chromium package (`.ci/run` installs it when missing); never a browser downloaded by Playwright.
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Any]:
    """A headless Chromium driven by Playwright; fails (never skips) when the browser is not installed."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the live view is tested in a real browser. "
            "Install Debian's chromium (apt-get install -y chromium); .ci/run does it in CI."
        )
    from playwright.async_api import async_playwright

    with tempfile.TemporaryDirectory(prefix="nbmcp-chromium-") as home:
        # Chromium keeps crash reports and settings under $HOME: a folder of its own, removed afterwards.
        env = {**os.environ, "HOME": home, "XDG_CONFIG_HOME": f"{home}/config", "XDG_CACHE_HOME": f"{home}/cache"}
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, env=env)
            try:
                yield browser
            finally:
                await browser.close()


@contextlib.asynccontextmanager
async def serving(
    target: Path, *, activity_for: Callable[[Path], Activity | None] | None = None, token: str | None = None
) -> AsyncIterator[tuple[ViewServer, str]]:
    """The view of `target` served on a free loopback port: (the view, its page's URL); stopped on exit."""
    view = ViewServer(target, token=token or new_token(), activity_for=activity_for)
    sock = bind("127.0.0.1", 0)
    task = asyncio.ensure_future(serve_view(view, sock, embedded=True))
    try:
        yield view, view.url(url_host("127.0.0.1", sock))
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        sock.close()


async def open_view(browser: Any, url: str) -> Any:
    """A page showing the view at `url`, once its first snapshot is in and its visible cells are drawn."""
    page = await browser.new_page(viewport={"width": 1100, "height": 900})
    await page.goto(url)
    await page.wait_for_selector("body[data-state=live]")
    await until(page, VISIBLE_CELLS_DRAWN)
    return page


#: True once no cell in the viewport waits for its HTML (cells further away are drawn when scrolled to).
VISIBLE_CELLS_DRAWN = """document.body.dataset.state === 'live' &&
  Array.from(document.querySelectorAll('#cells section.pending')).every(e => {
    const r = e.getBoundingClientRect(); return r.bottom < 0 || r.top > innerHeight; })"""


async def until(page: Any, expression: str, timeout: float = 30.0, every: float = 0.02) -> None:
    """Wait until the JavaScript `expression` is true in the page.

    Polled from here: the page's CSP (no eval) stops Playwright's own `wait_for_function` polling.
    """
    deadline = asyncio.get_running_loop().time() + timeout
    while not await page.evaluate(expression):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"still false after {timeout} s: {expression}")
        await asyncio.sleep(every)


def png(width: int = 160, height: int = 80) -> bytes:
    """A small real PNG (a colour gradient), without any imaging library."""
    rows = b"".join(
        b"\x00" + b"".join(bytes((x * 255 // width, y * 255 // height, 160)) for x in range(width))
        for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def write_nb(path: Path, *cells: Any) -> nbformat.NotebookNode:
    """Write a notebook of `cells` the way another program would (nbformat, in place)."""
    nb = nbformat.v4.new_notebook(cells=list(cells))
    nbformat.write(nb, path)
    return nb
