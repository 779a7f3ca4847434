"""Benchmark: `nbmcp exec --jobs 2` against `--jobs 1` over the same notebooks (issue 16).

    python -m tests.bench.exec_jobs [--notebooks 4] [--repeat 3]

Each round runs the real command (`python -m nbmcp exec NB... --jobs N`) in a subprocess on fresh
copies of the notebooks, alternating N=1 and N=2 so that load from other processes on the machine
hits both alike, and prints the wall times (median, min, max) and the speed-up. Two workloads: notebooks
that mostly wait (a cell sleeping, as one that downloads data or queries a service does) and
notebooks that compute (pure Python on one core). Each notebook starts a kernel of its own, which
costs CPU in both workloads. Not a timed test: the numbers are printed, not asserted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

WORKLOADS = {
    "wait": "import time\ntime.sleep(2.0)\nprint('waited')",
    # About 1 s of one core's work on the development machine.
    "compute": "total = sum(i * i for i in range(6_000_000))\nprint(total)",
}


def make_notebooks(folder: Path, count: int, body: str) -> list[Path]:
    paths = []
    for i in range(count):
        nb = nbformat.v4.new_notebook()
        nb.cells = [
            nbformat.v4.new_markdown_cell(f"# notebook {i}"),
            nbformat.v4.new_code_cell("import json, statistics"),
            nbformat.v4.new_code_cell(body),
            nbformat.v4.new_code_cell("statistics.mean([1, 2, 3])"),
        ]
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        path = folder / f"nb{i}.ipynb"
        nbformat.write(nb, path)
        paths.append(path)
    return paths


def timed_run(templates: list[Path], work: Path, jobs: int) -> float:
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    paths = [Path(shutil.copy(p, work / p.name)) for p in templates]
    command = [sys.executable, "-m", "nbmcp", "exec", *map(str, paths), "--jobs", str(jobs), "--timeout", "120"]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {done.returncode}:\n{done.stderr}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--notebooks", type=int, default=4, help="notebooks per run (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds per setting (default: %(default)s)")
    args = parser.parse_args(argv)
    # Other processes share the machine: its load says how far the numbers can be trusted.
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"nbmcp exec over {args.notebooks} notebooks, {args.repeat} rounds each, wall seconds")
    print(f"{os.cpu_count()} CPUs, load average before: {load}")
    print(f"{'workload':<9} {'--jobs':>6} {'median':>7} {'min':>7} {'max':>7}  speed-up (median)")
    with tempfile.TemporaryDirectory(prefix="nbmcp-bench-") as tmp:
        root = Path(tmp)
        for name, body in WORKLOADS.items():
            (root / name).mkdir()
            templates = make_notebooks(root / name, args.notebooks, body)
            times: dict[int, list[float]] = {1: [], 2: []}
            for _ in range(args.repeat):
                for jobs in (1, 2):
                    times[jobs].append(timed_run(templates, root / "run", jobs))
            medians = {jobs: statistics.median(t) for jobs, t in times.items()}
            for jobs, t in times.items():
                ratio = f"  {medians[1] / medians[jobs]:.2f}x" if jobs == 2 else ""
                print(f"{name:<9} {jobs:>6} {medians[jobs]:>7.2f} {min(t):>7.2f} {max(t):>7.2f}{ratio}")
    print(f"load average after: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
