"""Issue 24: a burst of outputs on a loaded machine reaches the file whole (no zmq high-water mark drops)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest

from nbmcp.session.session import NotebookSession

from .conftest import read_nb

pytestmark = pytest.mark.anyio

#: display() calls in the burst: ten times zmq's default receive high-water mark of 1,000 messages.
BURST = 10_000


@pytest.fixture
def both_cores_busy() -> Iterator[None]:
    """A busy-loop process per core (at least two), stopped when the test ends."""
    loops = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"], stdin=subprocess.DEVNULL)
        for _ in range(max(2, os.cpu_count() or 2))
    ]
    try:
        yield
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()


@pytest.mark.timeout(600)
async def test_ten_thousand_displays_under_cpu_load_are_all_in_the_file(nb_path: Path, both_cores_busy: None) -> None:
    code = f"for i in range({BURST}):\n    display(f'item {{i}}')"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)]), nb_path)
    session = NotebookSession(nb_path, timeout=240)
    await session.open()
    try:
        execution = await session.execute_cell(0, timeout=240)
    finally:
        await session.close()
    assert execution.result.status == "ok", execution.result.note
    outputs = read_nb(nb_path).cells[0].outputs
    texts = [o.data["text/plain"] for o in outputs if o.output_type == "display_data"]
    assert texts == [f"'item {i}'" for i in range(BURST)], f"{len(texts)} of {BURST} outputs in the file"
