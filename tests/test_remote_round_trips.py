"""Requests per remote edit against a real `jupyter server` (issue 25): one read and one write when nothing else
changed the notebook; a change by someone else costs one more read (its content), never a lost edit."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import httpx2
import pytest
from mcp import Client

from nbmcp.config import settings_from_env
from nbmcp.jupyter.client import HTTP_TIMEOUT, JupyterServer
from nbmcp.server.app import build_server

from .conftest import text_of
from .test_remote import Jupyter, launch_jupyter

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def jupyter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Jupyter]:
    home = tmp_path_factory.mktemp("round-trips")
    (home / "root").mkdir()
    server = launch_jupyter(home / "root", home)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def requests(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Every request nbmcp's Contents-API store makes, as "GET content=0", "GET content=1", "PUT"."""
    seen: Counter[str] = Counter()

    def count(request: httpx2.Request) -> None:
        content = request.url.params.get("content")
        seen[request.method + (f" content={content}" if content is not None else "")] += 1

    def client(self: JupyterServer) -> httpx2.Client:
        return httpx2.Client(headers=self.headers, timeout=HTTP_TIMEOUT, event_hooks={"request": [count]})

    monkeypatch.setattr(JupyterServer, "client", client)
    return seen


async def test_an_edit_is_one_read_and_one_write(jupyter: Jupyter, requests: Counter[str]) -> None:
    env = jupyter.env("trips.ipynb", runtime=False)
    async with Client(build_server(settings_from_env(env))) as c:
        r = await c.call_tool("insert_cell", {"cell_index": 0, "cell_type": "code", "cell_source": "a = 1"})
        assert not r.is_error, text_of(r)
        calls = [
            ("insert_cell", {"cell_index": 1, "cell_type": "markdown", "cell_source": "# b"}),
            ("edit_cell_source", {"cell_index": 0, "old_string": "a = 1", "new_string": "a = 2"}),
            ("delete_cell", {"cell_index": 1}),
        ]
        for name, args in calls:
            requests.clear()
            r = await c.call_tool(name, args)
            assert not r.is_error, text_of(r)
            assert requests == {"GET content=0": 1, "PUT": 1}, (name, requests)
        # Someone else saves meanwhile: one more read, for their version, and both changes are kept.
        with jupyter.http() as http:
            model = http.get("/api/contents/trips.ipynb").json()
            model["content"]["cells"][0]["source"] = "a = 3"
            http.put("/api/contents/trips.ipynb", json={"type": "notebook", "content": model["content"]})
        requests.clear()
        r = await c.call_tool("insert_cell", {"cell_index": 1, "cell_type": "code", "cell_source": "b = 1"})
        assert not r.is_error, text_of(r)
        assert requests == {"GET content=0": 1, "GET content=1": 1, "PUT": 1}, requests
    assert [c.source for c in jupyter.read("trips.ipynb").cells] == ["a = 3", "b = 1"]


def test_the_fixture_counts(jupyter: Jupyter, requests: Counter[str]) -> None:
    with JupyterServer(jupyter.url).client() as http:
        http.get(jupyter.url + "/api/contents", params={"content": "0"})
    assert requests == {"GET content=0": 1}
