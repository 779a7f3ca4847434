"""URLs that do not lead to a Jupyter server's API are explained in one line (issue 25).

A real `jupyter server` with a base path (as JupyterHub runs each user's server) addressed without it
and with a JupyterLab page appended; and a stdlib HTTP server on loopback standing in for a hub that only
redirects (a hub root, a stopped user server, a login page) or answers an HTML page.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from mcp import Client

from nbmcp.cli.doctor import doctor_cli
from nbmcp.cli.main import cli
from nbmcp.config import settings_from_env
from nbmcp.errors import NotJupyterError
from nbmcp.jupyter.client import JupyterServer
from nbmcp.jupyter.explain import page_base
from nbmcp.kernels.remote import RemoteKernel
from nbmcp.notebook.contents import ContentsStore
from nbmcp.server.app import build_server

from .conftest import text_of
from .test_remote import TOKEN, Jupyter, launch_jupyter

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def alice(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Jupyter]:
    """A Jupyter server under /user/alice/, as JupyterHub starts a user's server."""
    root, home = tmp_path_factory.mktemp("alice-root"), tmp_path_factory.mktemp("alice-home")
    server = launch_jupyter(root, home, base_url="/user/alice/")
    try:
        yield server
    finally:
        server.stop()


def start_up_error(capsys: pytest.CaptureFixture[str], url: str) -> str:
    """What `nbmcp --server-url URL` says on stderr, having exited 2 before serving."""
    capsys.readouterr()
    assert cli("--server-url", url, "--server-token", TOKEN, "a.ipynb") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and TOKEN not in err, err
    return err


def test_a_server_with_a_base_path_works_when_given_in_full(alice: Jupyter, capsys: pytest.CaptureFixture[str]) -> None:
    assert alice.url.endswith("/user/alice")
    origin = alice.url.removesuffix("/user/alice")
    err = start_up_error(capsys, origin)
    assert f"{origin} has no Jupyter server API" in err and "base path" in err and "/user/NAME" in err, err
    for page in ("/lab", "/lab/tree/sub/a.ipynb", "/tree"):
        err = start_up_error(capsys, alice.url + page)
        assert f"{alice.url}{page} is a page of JupyterLab" in err and f"give {alice.url}\n" in err, err


async def test_a_notebook_and_kernel_under_a_base_path(alice: Jupyter) -> None:
    async with Client(build_server(settings_from_env(alice.env("based.ipynb"), timeout=60))) as c:
        r = await c.call_tool("append_execute_code_cell", {"cell_source": "print(6 * 7)"})
        assert not r.is_error and "42" in text_of(r), text_of(r)
    assert alice.read("based.ipynb").cells[0].outputs[0].text == "42\n"


class FakeHub(BaseHTTPRequestHandler):
    """Answers every request as configured: a redirect to `location`, or an HTML page."""

    location: str | None = "/hub/login?next=%2Fhub%2F"

    def do_GET(self) -> None:
        if self.path == "/hub/api":  # the hub's own API answers a version, as a Jupyter server's does
            body = b'{"version": "5.2.1"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.location:
            self.send_response(302)
            self.send_header("Location", self.location)
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            body = b"<html><body>Sign in</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    do_POST = do_PUT = do_GET

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hub() -> Iterator[tuple[str, type[FakeHub]]]:
    handler = type("Hub", (FakeHub,), {})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", handler
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_hub_that_redirects_is_explained_at_start_up(
    hub: tuple[str, type[FakeHub]], capsys: pytest.CaptureFixture[str]
) -> None:
    url, handler = hub
    err = start_up_error(capsys, url)
    assert f"{url} is a JupyterHub" in err and f"{url}/user/NAME" in err, err
    err = start_up_error(capsys, f"{url}/hub/")
    assert "JupyterHub's own API" in err and f"{url}/user/NAME" in err, err
    err = start_up_error(capsys, f"{url}/user/alice/")
    assert "login page" in err and f"{url}/hub/spawn/alice" in err and f"{url}/hub/token" in err, err
    handler.location = "/hub/user/alice/api"  # what a hub answers for a stopped (culled) server
    err = start_up_error(capsys, f"{url}/user/alice")
    assert "alice's server is not running" in err and f"{url}/hub/spawn/alice" in err, err
    handler.location = None
    err = start_up_error(capsys, f"{url}/user/alice")
    assert "text/html" in err and "not Jupyter's JSON" in err, err


async def test_a_redirect_or_a_page_during_a_session_is_an_error_naming_the_server(
    hub: tuple[str, type[FakeHub]], tmp_path: Path
) -> None:
    url, handler = hub
    user = f"{url}/user/alice"
    # The user server was culled after nbmcp started: every request now ends at the hub.
    handler.location = "/hub/user/alice/api/contents/a.ipynb"
    store = ContentsStore(JupyterServer(user, TOKEN), "a.ipynb")
    with pytest.raises(
        NotJupyterError,
        match=rf"alice.s server is not running \(stopped or culled\); start it at {url}/hub/spawn/alice",
    ):
        store.read()
    kernel = RemoteKernel(JupyterServer(user, TOKEN), "a.ipynb")
    with pytest.raises(NotJupyterError, match=f"{user} redirects to the hub"):
        await kernel.ensure_started()
    await kernel.shutdown()
    handler.location = None  # a login page answered with 200, as some proxies do
    with pytest.raises(NotJupyterError, match=f"{user} answered HTTP 200 with a body of text/html, not Jupyter's JSON"):
        store.read()
    store.close()
    env = {"DOCUMENT_URL": user, "DOCUMENT_TOKEN": TOKEN, "DOCUMENT_ID": "a.ipynb", "RUNTIME_URL": user}
    async with Client(build_server(settings_from_env(env))) as c:
        r = await c.call_tool("read_all_cells", {})
    assert r.is_error and user in text_of(r) and "JSONDecodeError" not in text_of(r), text_of(r)


def test_doctor_explains_a_url_without_the_base_path(alice: Jupyter, capsys: pytest.CaptureFixture[str]) -> None:
    origin = alice.url.removesuffix("/user/alice")
    assert doctor_cli("--server-url", origin, "--server-token", TOKEN, "a.ipynb") == 1
    out = capsys.readouterr().out
    assert f"[FAIL] jupyter reachable  {origin} has no Jupyter server API" in out and TOKEN not in out, out


@pytest.mark.parametrize(
    "url, base",
    [
        ("http://h:8888/lab", "http://h:8888"),
        ("http://h/user/alice/lab/tree/a.ipynb", "http://h/user/alice"),
        ("http://h/user/lab/tree", "http://h/user/lab"),  # a hub user named "lab"
        ("http://h/user/alice", None),
    ],
)
def test_the_base_of_a_jupyterlab_page(url: str, base: str | None) -> None:
    assert page_base(url) == base
