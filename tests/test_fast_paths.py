"""What keeps nbmcp near its floor (issue 8), kept by tests: reads of an unchanged file cost a stat."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import nbformat
import pytest
from filelock import FileLock
from mcp import Client

from nbmcp.notebook import store as store_module
from nbmcp.notebook.fingerprint import RACY_WINDOW_NS
from nbmcp.notebook.store import LocalStore, lock_dir, new_notebook
from nbmcp.session.session import NotebookSession

from .conftest import read_nb

pytestmark = pytest.mark.anyio


def age(path: Path) -> None:
    """Make the file's mtime older than the racy window, as a file nobody touched for a while."""
    old = os.stat(path).st_mtime_ns - 10 * RACY_WINDOW_NS
    os.utime(path, ns=(old, old))


def test_read_if_unchanged_needs_a_trusted_stat(nb_path: Path) -> None:
    nbformat.write(new_notebook(), nb_path)
    age(nb_path)
    store = LocalStore(nb_path)
    assert store.read_if_unchanged() is None  # nothing read yet
    nb = store.read()
    assert store.read_if_unchanged() is nb
    store.edit(lambda nb: nb.cells.append(nbformat.v4.new_markdown_cell("x")))
    assert store.read_if_unchanged() is None  # just written: within the racy window, hash it
    age(nb_path)
    store.read()  # hashes once, now that the mtime is safely old
    assert store.read_if_unchanged() is not None
    other = new_notebook()
    other.cells.append(nbformat.v4.new_raw_cell("someone else"))
    nbformat.write(other, nb_path)
    age(nb_path)
    assert store.read_if_unchanged() is None  # changed on disk: the caller must reload
    assert store.read().cells[0].source == "someone else"


def test_read_if_unchanged_never_waits_for_an_edit(nb_path: Path) -> None:
    nbformat.write(new_notebook(), nb_path)
    age(nb_path)
    store = LocalStore(nb_path)
    store.read()
    inside, release = threading.Event(), threading.Event()

    def apply(nb: nbformat.NotebookNode) -> None:
        inside.set()
        release.wait(10)

    editor = threading.Thread(target=store.edit, args=(apply,))
    editor.start()
    try:
        assert inside.wait(10)
        started = time.monotonic()
        assert store.read_if_unchanged() is None  # mid-edit: the caller goes to a thread and waits there
        assert time.monotonic() - started < 0.5
    finally:
        release.set()
        editor.join()


async def test_read_tools_on_an_unchanged_file_do_not_read_it(
    client: Client, nb_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = await client.call_tool("append_markdown_cell", {"cell_source": "# a"})
    assert not r.is_error
    age(nb_path)
    reads = []
    original = LocalStore._read_bytes

    def counting(self: LocalStore) -> bytes:
        reads.append(self.path)
        return original(self)

    monkeypatch.setattr(LocalStore, "_read_bytes", counting)
    await client.call_tool("get_notebook_info", {})  # the first look after aging hashes the file once
    reads.clear()
    for _ in range(5):
        for tool, args in (("read_cell", {"cell_index": 0}), ("read_all_cells", {}), ("get_notebook_info", {})):
            r = await client.call_tool(tool, args)
            assert not r.is_error
    assert reads == []


def test_the_command_does_not_import_format_checkers_nbformat_never_uses() -> None:
    # Issue 14: the checkers cost a client's wait for `initialize`; nbformat must still work without them.
    import subprocess
    import sys

    unused = ("rfc3987_syntax", "isoduration", "webcolors", "uri_template", "fqdn", "rfc3339_validator", "jsonpointer")
    probe = (
        "import sys, nbmcp.cli.main, nbformat, jsonschema; "
        "nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell('1')]); nbformat.validate(nb); "
        f"print(sorted(n for n in {unused!r} if sys.modules.get(n) is not None))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"


def _append(source: str):  # type: ignore[no-untyped-def]
    return lambda nb: nb.cells.append(nbformat.v4.new_markdown_cell(source)) or len(nb.cells)


def test_edit_now_saves_a_small_notebook_when_nothing_is_to_be_waited_for(
    nb_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue 23: an edit with nothing to wait for is saved on the caller's thread (an event loop skips the
    # hop to a worker thread); anything else is left to `edit`, with nothing applied.
    nbformat.write(new_notebook(), nb_path)
    store = LocalStore(nb_path, lock_timeout=0.2)
    assert store.edit_now(_append("unread")) == (False, None)  # never read: `edit` loads it first
    store.read()
    saved: list[int] = []
    assert store.edit_now(_append("a"), on_saved=lambda: saved.append(1)) == (True, 1)
    assert saved == [1] and [c.source for c in read_nb(nb_path).cells] == ["a"]

    applied: list[str] = []

    def watched(source: str):  # type: ignore[no-untyped-def]
        return lambda nb: applied.append(source) or _append(source)(nb)

    with FileLock(next(lock_dir().glob("*.lock")), thread_local=False):  # another process is editing
        assert store.edit_now(watched("locked")) == (False, None)
    monkeypatch.setattr(store_module, "INLINE_EDIT_BYTES", 100)  # a large notebook: its write takes a while
    assert store.edit_now(watched("large")) == (False, None)
    monkeypatch.undo()
    other = read_nb(nb_path)
    other.cells.append(nbformat.v4.new_raw_cell("someone else"))
    nbformat.write(other, nb_path)  # the file is not the one last seen: reloaded by `edit`
    assert store.edit_now(watched("changed")) == (False, None)
    assert applied == []
    assert store.edit(_append("b")) == 3
    assert [c.source for c in read_nb(nb_path).cells] == ["a", "someone else", "b"]


async def test_small_edits_run_on_the_event_loop_and_wait_for_the_lock_on_a_thread(nb_path: Path) -> None:
    nbformat.write(new_notebook(), nb_path)
    session = NotebookSession(nb_path)
    await session.open(create=False, start_kernel=False)
    loop = threading.get_ident()
    assert await session.document.edit(lambda nb: threading.get_ident()) == loop
    lock = FileLock(next(lock_dir().glob("*.lock")), thread_local=False)
    lock.acquire()  # another process is editing: the edit waits for it on a worker thread
    threading.Timer(0.2, lock.release).start()
    assert await session.document.edit(lambda nb: threading.get_ident()) != loop
    assert not lock.is_locked
    await session.close()
