"""What the undo journal (issue 15) adds to an edit, and what undo costs.

    python -m tests.bench.undo_journal [--cells 1000] [--repeat 30]

On a notebook of `--cells` code cells (each with a small output), it measures the median time of
`NotebookSession.overwrite_source` with the journal (as nbmcp runs) and without it (the session's
journal switched off), with an empty journal and with one filled to its bounds by large deleted
cells, then `undo(steps=1)` and `undo(steps=MAX_JOURNAL_ENTRIES)`. Prints milliseconds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import nbformat

from nbmcp.notebook.journal import MAX_JOURNAL_BYTES, MAX_JOURNAL_ENTRIES, Journal
from nbmcp.session.session import NotebookSession


def _notebook(path: Path, cells: int) -> None:
    nb = nbformat.v4.new_notebook()
    for i in range(cells):
        cell = nbformat.v4.new_code_cell(f"x{i} = {i}\nprint(x{i})", execution_count=i + 1)
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"{i}\n")]
        nb.cells.append(cell)
    nbformat.write(nb, path)


async def _ms(call: Awaitable[object]) -> float:
    start = time.perf_counter()
    await call
    return (time.perf_counter() - start) * 1000


async def _median_ms(call: Callable[[int], Awaitable[object]], repeat: int) -> float:
    return statistics.median([await _ms(call(i)) for i in range(repeat)])


async def main(cells: int, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("NBMCP_STATE_DIR", str(Path(tmp) / "state"))
        os.environ.setdefault("NBMCP_LOCK_DIR", str(Path(tmp) / "locks"))
        path = Path(tmp) / "bench.ipynb"
        _notebook(path, cells)
        session = NotebookSession(path)
        await session.open(create=False, start_kernel=False)
        journal = session.document.journal

        async def edit(i: int) -> object:
            return await session.overwrite_source(0, f"y = {i}")

        Journal(path).clear()
        # Interleaved, so that a machine busy with other work weighs on both alike.
        with_times, without_times = [], []
        for i in range(repeat):
            session.document.journal = None
            without_times.append(await _ms(edit(2 * i)))
            session.document.journal = journal
            with_times.append(await _ms(edit(2 * i + 1)))
        without, small = statistics.median(without_times), statistics.median(with_times)

        # Fill the journal to its bounds with big deleted cells (the worst case for appending).
        big = "z" * (MAX_JOURNAL_BYTES // MAX_JOURNAL_ENTRIES - 500)
        for _ in range(MAX_JOURNAL_ENTRIES):
            await session.insert_cell(1, "raw", big)
            await session.delete_cell(1)
        size = Journal(path).path.stat().st_size
        full = await _median_ms(edit, repeat)
        await session.undo(steps=repeat)  # back to the state with a full journal of deletions
        undo_one = await _median_ms(lambda i: session.undo(), repeat)
        start = time.perf_counter()
        remaining = len(await session.history())
        await session.undo(steps=remaining)
        undo_all = (time.perf_counter() - start) * 1000

    print(f"notebook: {cells} code cells; median of {repeat}")
    print(f"overwrite_source without journal            {without:8.2f} ms")
    print(f"overwrite_source, journal nearly empty      {small:8.2f} ms  (+{small - without:.2f})")
    print(f"overwrite_source, journal full ({size / 2**20:.1f} MiB)   {full:8.2f} ms  (+{full - without:.2f})")
    print(f"undo(steps=1), full journal                 {undo_one:8.2f} ms")
    print(f"undo(steps={remaining}) in one write              {undo_all:8.2f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    anyio.run(main, args.cells, args.repeat)
