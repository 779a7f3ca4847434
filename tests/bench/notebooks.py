"""Realistic notebooks of any size for the benchmarks: mixed code and markdown, outputs like real ones.

Deterministic (seeded), so two runs measure the same bytes. Per 100 cells, about: 35 markdown cells
(headings, prose, lists); 65 code cells of 3 to 20 lines, of which 40% print a few lines, 25% show a
table (text/plain plus text/html, as pandas does), 5% an 8 KB PNG plot, 3% a traceback with ANSI
colours, and the rest nothing.
"""

from __future__ import annotations

import base64
import random

import nbformat
from nbformat import NotebookNode

from nbmcp.notebook.store import new_notebook

__all__ = ["make_notebook"]

WORDS = (
    "data",
    "model",
    "loss",
    "value",
    "mean",
    "frame",
    "column",
    "index",
    "series",
    "plot",
    "figure",
    "train",
    "test",
    "sample",
    "rate",
    "error",
    "result",
    "table",
    "group",
    "count",
    "feature",
    "weight",
    "batch",
    "epoch",
    "metric",
    "score",
    "average",
    "total",
    "filter",
    "merge",
)


def _words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def _markdown(rng: random.Random, i: int) -> str:
    parts = [f"## {i}. {_words(rng, 4).capitalize()}", "", _words(rng, rng.randint(20, 80)) + "."]
    if rng.random() < 0.4:
        parts += [""] + [f"- {_words(rng, rng.randint(3, 10))}" for _ in range(rng.randint(2, 6))]
    return "\n".join(parts)


def _code(rng: random.Random) -> str:
    lines = []
    for _ in range(rng.randint(3, 20)):
        a, b, c = rng.choice(WORDS), rng.choice(WORDS), rng.choice(WORDS)
        lines.append(
            rng.choice(
                [
                    f"{a} = {b}.groupby('{c}').mean()",
                    f"{a}_{b} = compute({c}, n={rng.randint(1, 99)})",
                    f"print({a}, {b}.shape)",
                    f"for {a} in {b}:\n    {c}.append({a})",
                ]
            )
        )
    return "\n".join(lines)


def _table(rng: random.Random) -> NotebookNode:
    cols = rng.sample(WORDS, 4)
    rows = [[f"{rng.random():.4f}" for _ in cols] for _ in range(rng.randint(5, 12))]
    plain = "\n".join(["   " + "  ".join(cols)] + [f"{i}  " + "  ".join(r) for i, r in enumerate(rows)])
    html = (
        '<div>\n<table border="1" class="dataframe">\n  <thead>\n    <tr>'
        + "".join(f"<th>{c}</th>" for c in cols)
        + "</tr>\n  </thead>\n  <tbody>\n"
        + "".join("    <tr>" + "".join(f"<td>{v}</td>" for v in r) + "</tr>\n" for r in rows)
        + "  </tbody>\n</table>\n</div>"
    )
    return nbformat.v4.new_output(
        "execute_result", data={"text/plain": plain, "text/html": html}, execution_count=rng.randint(1, 500)
    )


def _outputs(rng: random.Random, count: int) -> list[NotebookNode]:
    roll = rng.random()
    if roll < 0.40:
        text = "".join(f"{_words(rng, rng.randint(2, 8))} {rng.random():.6f}\n" for _ in range(rng.randint(1, 30)))
        return [nbformat.v4.new_output("stream", name="stdout", text=text)]
    if roll < 0.65:
        out = _table(rng)
        out.execution_count = count
        return [out]
    if roll < 0.70:
        png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + rng.randbytes(8_000)).decode()
        return [nbformat.v4.new_output("display_data", data={"image/png": png, "text/plain": "<Figure size 640x480>"})]
    if roll < 0.73:
        frames = [f"\x1b[0;32m{_words(rng, 3)}\x1b[0m line {rng.randint(1, 400)}" for _ in range(rng.randint(2, 6))]
        return [nbformat.v4.new_output("error", ename="KeyError", evalue=f"'{rng.choice(WORDS)}'", traceback=frames)]
    return []


def make_notebook(n_cells: int, seed: int = 8) -> NotebookNode:
    """A valid nbformat 4.5 notebook of `n_cells` cells (same seed, same notebook)."""
    rng = random.Random(seed)
    nb = new_notebook()
    count = 0
    for i in range(n_cells):
        if rng.random() < 0.35:
            cell = nbformat.v4.new_markdown_cell(_markdown(rng, i))
        else:
            count += 1
            cell = nbformat.v4.new_code_cell(_code(rng), execution_count=count)
            cell.outputs = _outputs(rng, count)
        cell.id = f"cell-{i:05d}"
        nb.cells.append(cell)
    return nb
