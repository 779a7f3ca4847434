"""The live view (issue 22): from a change of the file to the page showing it, and a large notebook's load.

    python -m tests.bench.live_view [--sizes 10,10000] [--repeat 20]

For each size it writes a notebook of that many cells (markdown, and code with a short output), serves
its view on a free loopback port, opens it in headless Chromium (Debian's, as the tests do) and measures:

- load: from `page.goto` to the first snapshot drawn with every visible cell rendered;
- jump to middle: from scrolling to the middle of the notebook to the cells there being drawn;
- change: `--repeat` times, another program replaces the file (written to a temporary file, then
  renamed, as editors and nbmcp save) with a unique marker in a visible cell; the time from the rename
  to the marker being in the page. Median and p90, in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_output

from tests.viewing import VISIBLE_CELLS_DRAWN, chromium, serving, until


def _notebook(cells: int) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    for i in range(cells):
        if i % 2:
            out = new_output("stream", name="stdout", text=f"{i}\n")
            nb.cells.append(new_code_cell(f"x = {i}\nprint(x)", execution_count=i, outputs=[out]))
        else:
            nb.cells.append(new_markdown_cell(f"## Section {i}\n\nSome *text* for cell {i}."))
    return nb


def _replace(nb: nbformat.NotebookNode, path: Path) -> float:
    """Save as an editor does (a temporary file renamed over the notebook); returns when the rename happened."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    started = time.perf_counter()
    os.replace(tmp, path)
    return started


def _p90(values: list[float]) -> float:
    return sorted(values)[max(int(len(values) * 0.9) - 1, 0)]


async def bench(cells: int, repeat: int, folder: Path) -> dict[str, float]:
    path = folder / f"view-{cells}.ipynb"
    nb = _notebook(cells)
    _replace(nb, path)
    async with serving(path) as (view, url), chromium() as browser:
        page = await browser.new_page(viewport={"width": 1100, "height": 900})
        started = time.perf_counter()
        await page.goto(url)
        await until(page, VISIBLE_CELLS_DRAWN, every=0.005)
        load = time.perf_counter() - started
        started = time.perf_counter()
        await page.evaluate("window.scrollTo(0, document.body.scrollHeight / 2)")
        await until(page, VISIBLE_CELLS_DRAWN, every=0.005)
        scroll = time.perf_counter() - started
        feed = view.feed(None)
        assert feed is not None
        await asyncio.wait_for(feed.ready.wait(), 10)
        times = []
        for _ in range(repeat):
            marker = f"m{uuid.uuid4().hex}"
            nb.cells[1].source = f"print('{marker}')"
            started = _replace(nb, path)
            await until(page, f"document.getElementById('cells').textContent.includes('{marker}')", every=0.005)
            times.append(time.perf_counter() - started)
            await asyncio.sleep(0.2)
    return {
        "cells": cells,
        "load_ms": round(load * 1000),
        "scroll_ms": round(scroll * 1000),
        "change_median_ms": round(statistics.median(times) * 1000),
        "change_p90_ms": round(_p90(times) * 1000),
    }


async def main(sizes: list[int], repeat: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        print(f"{'cells':>7} {'page load':>10} {'jump to middle':>15} {'change median':>14} {'change p90':>11}   (ms)")
        for n in sizes:
            r = await bench(n, repeat, Path(tmp))
            print(
                f"{r['cells']:>7} {r['load_ms']:>10} {r['scroll_ms']:>15} "
                f"{r['change_median_ms']:>14} {r['change_p90_ms']:>11}"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10,10000", help="notebook sizes, comma-separated (default: 10,10000)")
    parser.add_argument("--repeat", type=int, default=20, help="changes measured per size (default: 20)")
    args = parser.parse_args()
    asyncio.run(main([int(s) for s in args.sizes.split(",")], args.repeat))
