"""Benchmark: `nbmcp exec` against `jupyter execute` (nbclient): start-up, and notebooks of light cells (issue 26).

    python -m tests.bench.exec_startup [--repeat 15] [--cells 40,200] [--cell-repeat 5]

Start-up is `nbmcp exec --help` against `jupyter execute --help`, each the installed console script in a
fresh process; then `nbmcp exec NB` against `jupyter execute NB` on a notebook of N cells that each do
almost nothing (`x = k`), on fresh copies. The two commands of a pair run back to back, alternating which
goes first, so that load from other processes on the machine hits both alike; the numbers are the
medians of each command and the median of the pairs' ratios. Not a timed test: printed, not asserted.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

BIN = Path(sys.executable).parent


def _time(command: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return elapsed


def paired(ours: list[str], theirs: list[str], repeat: int, before: object = None) -> tuple[float, float, float]:
    """Medians of our time, their time, and of the ratio ours/theirs over `repeat` interleaved pairs."""
    mine, peers, ratios = [], [], []
    for i in range(repeat):
        pair = {}
        order = [("ours", ours), ("theirs", theirs)]
        for name, command in order if i % 2 == 0 else order[::-1]:
            if callable(before):
                before()
            pair[name] = _time(command)
        mine.append(pair["ours"])
        peers.append(pair["theirs"])
        ratios.append(pair["ours"] / pair["theirs"])
    return statistics.median(mine), statistics.median(peers), statistics.median(ratios)


def light_notebook(path: Path, cells: int) -> Path:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(f"x = {k}") for k in range(cells)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15, help="pairs for the start-up (default: 15)")
    parser.add_argument("--cells", default="40,200", help="notebook sizes in cells (default: 40,200)")
    parser.add_argument("--cell-repeat", type=int, default=5, help="pairs per notebook size (default: 5)")
    args = parser.parse_args()
    nbmcp, jupyter = str(BIN / "nbmcp"), str(BIN / "jupyter")

    rows = [("what", "nbmcp exec", "jupyter execute", "ratio (median of pairs)")]
    ours, theirs, ratio = paired([nbmcp, "exec", "--help"], [jupyter, "execute", "--help"], args.repeat)
    rows.append(("--help (start-up)", f"{ours:.3f} s", f"{theirs:.3f} s", f"{ratio:.2f}"))
    with tempfile.TemporaryDirectory() as folder:
        for n in (int(c) for c in args.cells.split(",")):
            template = light_notebook(Path(folder) / f"template{n}.ipynb", n)
            a, b = Path(folder) / f"ours{n}.ipynb", Path(folder) / f"theirs{n}.ipynb"

            def fresh(template: Path = template, a: Path = a, b: Path = b) -> None:
                shutil.copy(template, a)
                shutil.copy(template, b)

            ours, theirs, ratio = paired(
                [nbmcp, "exec", str(a), "--kernel", "python3"],
                [jupyter, "execute", "--inplace", "--kernel_name=python3", str(b)],
                args.cell_repeat,
                before=fresh,
            )
            rows.append((f"{n} light cells", f"{ours:.3f} s", f"{theirs:.3f} s", f"{ratio:.2f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()
