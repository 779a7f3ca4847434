"""One server for many notebooks: a folder, per-client active notebooks, notebook_path, confinement."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import anyio
import nbformat
import pytest
from mcp import Client

from nbmcp.config import Settings
from nbmcp.notebook.store import LocalStore, new_notebook
from nbmcp.server.app import create_server

from .conftest import read_nb, text_of
from .test_http import ServerProcess

pytestmark = pytest.mark.anyio


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "work"
    (root / "sub").mkdir()
    (root / ".hidden").mkdir()
    (root / ".ipynb_checkpoints").mkdir()
    for name in ("a.ipynb", "sub/b.ipynb", ".hidden/h.ipynb", ".ipynb_checkpoints/a-checkpoint.ipynb"):
        nb = new_notebook()
        nb.cells.append(nbformat.v4.new_markdown_cell(f"# {name}"))
        nbformat.write(nb, root / name)
    (tmp_path / "work-evil").mkdir()
    nbformat.write(new_notebook(), tmp_path / "work-evil" / "x.ipynb")
    (tmp_path / "outside.ipynb").write_text("{}")
    (root / "link-out").symlink_to(tmp_path)
    return root


async def call(client: Client, tool: str, **args: object):  # type: ignore[no-untyped-def]
    r = await client.call_tool(tool, args)
    assert not r.is_error, text_of(r)
    return r


async def test_folder_server_lists_uses_and_unuses_notebooks(folder: Path) -> None:
    server, workspace = create_server(Settings(path=folder, timeout=60))
    async with Client(server) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert {"list_notebooks", "use_notebook", "unuse_notebook"} <= names
        r = await call(client, "list_notebooks")
        head, *rows = text_of(r).splitlines()
        assert rows == ["- a.ipynb (kernel not started)", "- sub/b.ipynb (kernel not started)"]  # hidden skipped
        assert head.startswith("2 notebook(s) under ")
        r = await client.call_tool("read_all_cells", {})
        assert r.is_error and "no notebook chosen" in text_of(r) and "use_notebook" in text_of(r)
        await call(client, "use_notebook", path="sub/b.ipynb")
        r = await call(client, "append_execute_code_cell", cell_source="import os; os.getcwd()")
        assert str(folder / "sub") in text_of(r)  # its own kernel, in its own folder
        r = await call(client, "list_notebooks")
        active = [row for row in text_of(r).splitlines() if "[active]" in row]
        assert active == ["- sub/b.ipynb [active] (kernel idle, 2 cells)"]
        r = await call(client, "use_notebook", path="c.ipynb", create=True)
        assert (folder / "c.ipynb").exists() and "0 cells" in text_of(r)
        pid_b = workspace.hosts[folder / "sub" / "b.ipynb"].session.kernel.pid  # type: ignore[union-attr]
        r = await call(client, "unuse_notebook", path="sub/b.ipynb")
        assert "kernel was shut down" in text_of(r)
        assert folder / "sub" / "b.ipynb" not in workspace.hosts
    assert pid_b is not None
    assert [c.source for c in read_nb(folder / "sub" / "b.ipynb").cells][-1] == "import os; os.getcwd()"


async def test_notebook_path_names_the_notebook_outright(folder: Path) -> None:
    server, _ = create_server(Settings(path=folder, timeout=60, kernel_at_open=False))
    async with Client(server) as client:
        await call(client, "use_notebook", path="a.ipynb")
        await call(client, "append_markdown_cell", cell_source="to b", notebook_path="sub/b.ipynb")
        await call(client, "append_markdown_cell", cell_source="to a")
    assert [c.source for c in read_nb(folder / "sub" / "b.ipynb").cells] == ["# sub/b.ipynb", "to b"]
    assert [c.source for c in read_nb(folder / "a.ipynb").cells] == ["# a.ipynb", "to a"]


@pytest.mark.parametrize(
    "path",
    ["../outside.ipynb", "/etc/x.ipynb", "EVIL", "link-out/outside.ipynb", "a\x00.ipynb", "sub/../../outside.ipynb"],
)
async def test_every_traversal_is_refused_before_any_file_is_touched(folder: Path, path: str) -> None:
    if path == "EVIL":
        path = str(folder.parent / "work-evil" / "x.ipynb")
    before = {p: p.read_bytes() for p in folder.parent.rglob("*.ipynb") if p.is_file() and not p.is_symlink()}
    server, _ = create_server(Settings(path=folder, timeout=60))
    async with Client(server) as client:
        for tool, args in [
            ("use_notebook", {"path": path, "create": True}),
            ("append_markdown_cell", {"cell_source": "x", "notebook_path": path}),
            ("read_all_cells", {"notebook_path": path}),
        ]:
            r = await client.call_tool(tool, args)
            assert r.is_error and "refused notebook path" in text_of(r), (tool, text_of(r))
    after = {p: p.read_bytes() for p in folder.parent.rglob("*.ipynb") if p.is_file() and not p.is_symlink()}
    assert after == before


async def test_single_notebook_server_refuses_other_notebooks(folder: Path) -> None:
    server, _ = create_server(Settings(path=folder / "a.ipynb", timeout=60, kernel_at_open=False))
    async with Client(server) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert "use_notebook" not in names
        r = await client.call_tool("read_all_cells", {"notebook_path": "sub/b.ipynb"})
        assert r.is_error and "serves only a.ipynb" in text_of(r)
        r = await call(client, "read_all_cells", notebook_path="a.ipynb")
        assert "# a.ipynb" in text_of(r)


@pytest.mark.timeout(90)
async def test_two_http_sessions_keep_their_own_active_notebook(folder: Path) -> None:
    server = ServerProcess(folder)
    try:
        async with (
            Client(f"{server.url}/mcp", mode="legacy") as one,
            Client(f"{server.url}/mcp", mode="legacy") as two,
        ):
            await call(one, "use_notebook", path="a.ipynb")
            await call(two, "use_notebook", path="sub/b.ipynb")

            async def writes(client: Client, tag: str) -> None:
                for i in range(5):
                    await call(client, "append_markdown_cell", cell_source=f"{tag} {i}")

            async with anyio.create_task_group() as tg:
                tg.start_soon(writes, one, "one")
                tg.start_soon(writes, two, "two")
            r = await call(one, "list_notebooks")
            assert next(row for row in text_of(r).splitlines() if "[active]" in row).startswith("- a.ipynb [active]")
    finally:
        server.stop()
    assert [c.source for c in read_nb(folder / "a.ipynb").cells][1:] == [f"one {i}" for i in range(5)]
    assert [c.source for c in read_nb(folder / "sub" / "b.ipynb").cells][1:] == [f"two {i}" for i in range(5)]
    health = server.log()
    assert "serving" in health


@pytest.mark.timeout(90)
async def test_stateless_http_clients_name_the_notebook_on_each_call(folder: Path) -> None:
    server = ServerProcess(folder)
    try:
        async with Client(f"{server.url}/mcp") as client:  # 2026-07-28: no session between calls
            r = await client.call_tool("use_notebook", {"path": "a.ipynb"})
            assert r.is_error and "notebook_path='a.ipynb'" in text_of(r)
            await call(client, "append_markdown_cell", cell_source="stateless", notebook_path="a.ipynb")
    finally:
        server.stop()
    assert [c.source for c in read_nb(folder / "a.ipynb").cells] == ["# a.ipynb", "stateless"]


@pytest.mark.timeout(60)
async def test_a_fifo_notebook_gets_an_error_at_once_and_blocks_no_other(folder: Path) -> None:
    os.mkfifo(folder / "x.ipynb")
    server, _ = create_server(Settings(path=folder, timeout=60, kernel_at_open=False))
    async with Client(server) as client:
        for _ in range(2):  # the second call too: nothing was left holding a lock
            with anyio.fail_after(20):
                r = await client.call_tool("read_all_cells", {"notebook_path": "x.ipynb"})
            assert r.is_error and "not a regular file (a FIFO)" in text_of(r)
        with anyio.fail_after(20):
            r = await call(client, "read_all_cells", notebook_path="a.ipynb")
        assert "# a.ipynb" in text_of(r)


@pytest.mark.timeout(60)
async def test_a_notebook_slow_to_open_holds_up_no_other(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A hung network share cannot be made on demand: its read is held back here instead."""
    release = threading.Event()
    real_read = LocalStore.read

    def read(self: LocalStore) -> nbformat.NotebookNode:
        if self.path.name == "b.ipynb":
            release.wait(30)
        return real_read(self)

    monkeypatch.setattr(LocalStore, "read", read)
    server, _ = create_server(Settings(path=folder, timeout=60, kernel_at_open=False))
    async with Client(server) as client, anyio.create_task_group() as tg:
        slow: list[str] = []

        async def open_slow() -> None:
            slow.append(text_of(await call(client, "read_all_cells", notebook_path="sub/b.ipynb")))

        tg.start_soon(open_slow)
        await anyio.sleep(0.5)
        with anyio.fail_after(20):
            r = await call(client, "read_all_cells", notebook_path="a.ipynb")
        assert "# a.ipynb" in text_of(r) and not slow
        release.set()
    assert "# sub/b.ipynb" in slow[0]
