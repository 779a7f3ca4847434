"""The live view's three ways to be served: `nbmcp view`, beside MCP over stdio, and at /view/ over HTTP."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx2
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell

from .test_doctor import by_name, report
from .test_http import TOKEN, ServerProcess
from .test_stdio import RawStdio
from .viewing import chromium, open_view, write_nb

URL = re.compile(r"http://127\.0\.0\.1:\d+/view/\?token=[\w\-%]+")


def _open_stream(url: str) -> threading.Event:
    """An event stream held open (as by a browser tab) in a thread; the event is set once it is connected."""
    connected = threading.Event()

    def hold() -> None:
        try:
            with httpx2.stream("GET", url.replace("/view/?", "/view/events?"), timeout=30) as response:
                for _ in response.iter_lines():
                    connected.set()
        except httpx2.HTTPError:
            pass  # the server went away: that is the point

    threading.Thread(target=hold, daemon=True).start()
    return connected


@pytest.mark.timeout(120)
def test_nbmcp_view_prints_its_url_serves_the_page_and_stops_on_ctrl_c(nb_path: Path) -> None:
    write_nb(nb_path, new_markdown_cell("# Served by nbmcp view"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "nbmcp", "view", str(nb_path), "--port", "0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        match = URL.search(line)
        assert match, line
        url = match.group(0)
        page = httpx2.get(url, timeout=10)
        assert page.status_code == 200 and "Content-Security-Policy" in page.headers
        assert httpx2.get(url.split("?")[0], timeout=10).status_code == 403  # no token
        cells = httpx2.get(url.replace("/view/?", "/view/cells?") + "&ids=", timeout=10)
        assert cells.json() == {"cells": []}
        # A page left open must not keep Ctrl+C from stopping it.
        assert _open_stream(url).wait(10)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert out == ""


def test_nbmcp_view_refuses_a_non_loopback_host_without_a_token(nb_path: Path) -> None:
    write_nb(nb_path)
    done = subprocess.run(
        [sys.executable, "-m", "nbmcp", "view", str(nb_path), "--host", "0.0.0.0", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "NBMCP_TOKEN"},
    )
    assert done.returncode == 2 and "--token" in done.stderr


@pytest.mark.timeout(120)
def test_view_beside_mcp_over_stdio_logs_its_url_once_and_keeps_stdout_clean(nb_path: Path) -> None:
    write_nb(nb_path, new_code_cell("print('hello from the view test')"))
    server = RawStdio(nb_path, "--view")
    try:
        server.handshake()
        rid = server.send("tools/call", {"name": "get_notebook_info", "arguments": {}})
        text = "\n".join(c.get("text", "") for c in server.response(rid)["result"]["content"])
        assert "{" in text, text
        info = json.loads(text[text.index("{") :])
        url = info["live_view"]
        assert URL.fullmatch(url), url
        page = httpx2.get(url, timeout=10)
        assert page.status_code == 200 and "view.js" in page.text
        events = httpx2.get(url.replace("/view/?", "/view/cells?") + "&ids=", timeout=10)
        assert events.status_code == 200
        assert _open_stream(url).wait(10)
    finally:
        stderr = server.close()  # closing stdin stops it, open page or not
    assert server.proc.returncode == 0
    for line in server.lines:
        assert json.loads(line).get("jsonrpc") == "2.0", line
    assert stderr.count("live view of") == 1 and url in stderr


@pytest.mark.anyio
@pytest.mark.timeout(120)
async def test_the_http_transport_serves_the_view_at_slash_view_with_its_token(nb_path: Path) -> None:
    write_nb(nb_path, new_markdown_cell("# Over streamable HTTP"))
    server = ServerProcess(nb_path, "--token", TOKEN, "--view")
    try:
        base = server.url
        ok = f"{base}/view/?token={TOKEN}"
        assert httpx2.get(ok, timeout=10).status_code == 200
        assert httpx2.get(f"{base}/view/", timeout=10).status_code == 403
        assert httpx2.get(f"{base}/view/?token=nope", timeout=10).status_code == 403
        assert httpx2.get(ok, headers={"Host": "evil.example"}, timeout=10).status_code == 421
        assert httpx2.get(ok, headers={"Origin": "http://evil.example"}, timeout=10).status_code == 403
        # MCP itself still wants its bearer token; the view's URL token is the same secret.
        assert httpx2.post(f"{base}/mcp", json={}, timeout=10).status_code == 401
        async with chromium() as browser:
            page = await open_view(browser, ok)
            assert await page.locator(".markdown h1").inner_text() == "Over streamable HTTP"
        # The user's --token is never logged: the URL names it.
        assert "/view/?token=<your --token>" in server.log() and TOKEN not in server.log()
        assert _open_stream(ok).wait(10)  # a page left open while the server stops
        started = time.monotonic()
    finally:
        code = server.stop()  # SIGTERM; it raises if the server ignored it
    # uvicorn ends by re-raising the signal, as for MCP alone: what matters is that an open page did not hold it.
    assert code in (0, -signal.SIGTERM) and time.monotonic() - started < 20


def test_doctor_says_where_the_live_view_is(nb_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_nb(nb_path)
    for flags, verdict, says in [
        ((), "skip", "nbmcp view PATH"),
        (("--view",), "pass", "beside MCP over stdio"),
        (("--view", "--transport", "streamable-http", "--port", "4999"), "pass", "127.0.0.1:4999/view/?token="),
    ]:
        view = by_name(report(capsys, str(nb_path), "--read-only", *flags)[1])["live view"]
        assert view["verdict"] == verdict and says in view["detail"], (flags, view)
