"""A real password-only `jupyter server` on loopback (issue 25): nbmcp logs in with its login form and XSRF cookie,
then edits and runs through the session cookie; a wrong password is one line; no password in any log or answer."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import nbformat
import pytest
from jupyter_server.auth import passwd
from mcp import Client

from nbmcp.cli.main import cli
from nbmcp.config import settings_from_env
from nbmcp.errors import UsageError
from nbmcp.server.app import build_server

from .conftest import text_of
from .test_remote import _free_port
from .test_remote_reconnect import run

pytestmark = pytest.mark.anyio

PASSWORD = "pw-8d2f6b1a9c3e"  # distinctive, so a leak into any log line or answer is found


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A jupyter_server with a password and no token: (its URL, its root folder)."""
    home = tmp_path_factory.mktemp("password-server")
    root = home / "root"
    root.mkdir()
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONTRACEMALLOC"}
    env |= {"JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_RUNTIME_DIR": str(home / "runtime")}
    with open(home / "server.log", "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jupyter_server",
                f"--PasswordIdentityProvider.hashed_password={passwd(PASSWORD)}",
                "--IdentityProvider.token=",
                "--ip=127.0.0.1",
                f"--port={port}",
                f"--ServerApp.root_dir={root}",
                "--ServerApp.allow_root=True",
                "--no-browser",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
            env=env,
            cwd=home,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx2.TransportError):
                if httpx2.get(f"{url}/api", timeout=5).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"jupyter server did not start: {(home / 'server.log').read_text()}")
            time.sleep(0.1)
        assert httpx2.get(f"{url}/api/contents", timeout=5).status_code == 403  # the subject: nothing without a login
        yield url, root
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def test_a_password_server_is_edited_and_run_through_its_login(
    server: tuple[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url, root = server
    env = {"DOCUMENT_URL": url, "DOCUMENT_PASSWORD": PASSWORD, "RUNTIME_URL": url, "DOCUMENT_ID": "pw.ipynb"}
    answers = []
    async with Client(build_server(settings_from_env(env, timeout=60))) as c:
        r = await c.call_tool("insert_cell", {"cell_index": 0, "cell_type": "markdown", "cell_source": "# Logged in"})
        answers.append(text_of(r))
        r = await c.call_tool("append_execute_code_cell", {"cell_source": "print(6 * 7)"})
        answers.append(text_of(r))
        assert "42" in text_of(r), text_of(r)
        answers.append(await run(c, "print('again')"))  # the websocket, with the same login
        answers.append(text_of(await c.call_tool("get_notebook_info", {})))
    nb = nbformat.read(root / "pw.ipynb", as_version=4)
    assert [cell.source for cell in nb.cells] == ["# Logged in", "print(6 * 7)"]
    assert nb.cells[1].outputs[0]["text"] == "42\n"
    assert not any(PASSWORD in a for a in answers)
    assert PASSWORD not in caplog.text  # not even in the HTTP libraries' debug lines
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("nbmcp"))
    assert "_xsrf" not in ours and "username-" not in ours  # nor the login's cookies in nbmcp's own


def test_a_wrong_password_is_one_line_naming_the_option(
    server: tuple[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    url, _ = server
    wrong = PASSWORD + "-wrong"
    assert cli("--server-url", url, "--server-password", wrong, "a.ipynb") == 2
    err = capsys.readouterr().err
    assert err.startswith("nbmcp: error: ") and len(err.strip().splitlines()) == 1, err
    assert f"the Jupyter server at {url} refused the password (HTTP 401)" in err
    assert "--server-password, DOCUMENT_PASSWORD or RUNTIME_PASSWORD" in err and wrong not in err


def test_password_settings() -> None:
    s = settings_from_env({"RUNTIME_URL": "http://h:1", "RUNTIME_PASSWORD": PASSWORD}, path="a.ipynb")
    assert s.runtime_password == PASSWORD and s.document_password is None and PASSWORD not in repr(s)
    assert PASSWORD not in repr(s.runtime_server())
    s = settings_from_env({}, server_url="http://h:1", server_password=PASSWORD, path="a.ipynb")
    assert s.document_password == s.runtime_password == PASSWORD
    with pytest.raises(UsageError, match="give its URL too"):
        settings_from_env({"DOCUMENT_PASSWORD": PASSWORD})
