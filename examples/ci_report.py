"""Build a small report notebook in CI with nbmcp's Python API: markdown, code, a table and a plot.

    python examples/ci_report.py build/report.ipynb      # then: nbmcp exec build/report.ipynb

The notebook is written from scratch (an existing file at that path is replaced) and every code cell
runs as it is added, so the file holds its outputs when the script ends. A cell that fails stops the
script with a non-zero exit and the cell's traceback (`CellExecutionError`), which fails the CI job.
The kernel needs matplotlib for the plot (`pip install matplotlib`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nbmcp import CellExecutionError, Notebook

DATA = """\
import statistics

# Daily build times in seconds; in a real job, read them from your CI system's API or a file.
days = ["Mon", "Tue", "Wed", "Thu", "Fri"]
seconds = [312, 298, 341, 287, 305]
mean = statistics.mean(seconds)
print(f"{len(days)} builds, mean {mean:.1f} s, slowest {max(seconds)} s")
"""

TABLE = """\
from IPython.display import Markdown

rows = "\\n".join(f"| {d} | {s} | {s - mean:+.1f} |" for d, s in zip(days, seconds))
Markdown("| day | seconds | vs mean |\\n|---|---|---|\\n" + rows)
"""

PLOT = """\
import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(5, 3))
ax.bar(days, seconds, color="tab:blue")
ax.axhline(mean, color="tab:orange", linestyle="--", label=f"mean {mean:.0f} s")
ax.set_ylabel("seconds")
ax.set_title("Build time per day")
ax.legend()
plt.show()
"""


def build_report(path: Path) -> Path:
    """Write the report notebook at `path` (replacing any file there) and run its code cells."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    with Notebook(path, timeout=120) as nb:
        nb.add_markdown("# Build report\n\nGenerated in CI by `examples/ci_report.py` with nbmcp's Python API.")
        nb.add_code(DATA, run=True)
        nb.add_markdown("## Builds")
        nb.add_code(TABLE, run=True)
        nb.add_markdown("## Trend")
        nb.add_code(PLOT, run=True)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", nargs="?", default="report.ipynb", help="where to write the report notebook")
    args = parser.parse_args(argv)
    try:
        path = build_report(Path(args.path))
    except CellExecutionError as exc:
        print(f"ci_report: {exc}", file=sys.stderr)
        return 1
    print(f"ci_report: wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
