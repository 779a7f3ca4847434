"""Cells as the session finds, names and builds them: pure functions on an nbformat notebook, no I/O."""

from __future__ import annotations

import difflib
import itertools
import operator

import nbformat
from nbformat import NotebookNode

from ..errors import CellIndexError, CellNotFoundError, UsageError
from ..notebook.encoder import mark_unknown
from .results import CellRef, CellView

__all__ = [
    "CELL_TYPES",
    "RAISES_TAG",
    "SKIP_TAG",
    "cell_ref",
    "cell_source",
    "cell_view",
    "check_index",
    "check_range",
    "ensure_ids",
    "find_id",
    "locate",
    "new_cell",
    "runnable",
    "source_diff",
]

CELL_TYPES = ("code", "markdown", "raw")
#: run_all leaves code cells with this tag alone (nbclient's `skip_cells_with_tag` default).
SKIP_TAG = "skip-execution"
#: run_all goes on after an error in a code cell with this tag (nbclient's rule for it).
RAISES_TAG = "raises-exception"


def cell_source(cell: NotebookNode) -> str:
    """A cell's source as one string (nbformat allows a list of lines)."""
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def cell_view(index: int, cell: NotebookNode) -> CellView:
    """Everything about the cell at `index`."""
    return CellView(
        index=index,
        id=cell.get("id"),
        cell_type=cell.get("cell_type", "?"),
        source=cell_source(cell),
        execution_count=cell.get("execution_count"),
        outputs=list(cell.get("outputs", [])),
    )


def check_index(index: int, n: int) -> int:
    """Resolve a cell index (negative counts from the end) or raise CellIndexError."""
    resolved = index + n if index < 0 else index
    if not 0 <= resolved < n:
        raise CellIndexError(index, n)
    return resolved


def find_id(nb: NotebookNode, cell_id: str, hint: int | None = None) -> int:
    """The index of the cell with `cell_id`; `hint`, where it was last seen, is looked at first."""
    if hint is not None and 0 <= hint < len(nb.cells) and nb.cells[hint].get("id") == cell_id:
        return hint
    try:
        return operator.indexOf(map(_ID_OF, nb.cells), cell_id)  # the scan runs in C: 10,000 cells in 0.3 ms
    except ValueError:
        raise CellNotFoundError(cell_id) from None


_ID_OF = operator.methodcaller("get", "id")


def locate(
    nb: NotebookNode, index: int | None, cell_id: str | None, *, what: str = "cell_index", id_name: str = "cell_id"
) -> int:
    """The position of the cell given by index or by id: exactly one of the two."""
    if (index is None) == (cell_id is None):
        raise UsageError(f"give either {what} or {id_name} (exactly one of the two)")
    if cell_id is not None:
        return find_id(nb, cell_id)
    assert index is not None
    return check_index(index, len(nb.cells))


def cell_ref(index: int, cell: NotebookNode) -> CellRef:
    """Where the cell at `index` is: its index, id and type."""
    return CellRef(index, cell.get("id"), cell.get("cell_type", "?"))


def source_diff(old: str, new: str, index: int) -> str:
    """A unified diff of a cell's source; a last line without a newline is marked, as git marks it."""
    lines = difflib.unified_diff(
        old.splitlines(keepends=True),
        new.splitlines(keepends=True),
        fromfile=f"cell {index} (before)",
        tofile=f"cell {index} (after)",
    )
    # difflib glues a line without its final newline to the next one ("-b = 2+b = 3"): end each line.
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of cell\n" for line in lines)


def new_cell(cell_type: str, source: str) -> NotebookNode:
    """A new cell of `cell_type` (one of CELL_TYPES) holding `source`."""
    if cell_type == "code":
        return nbformat.v4.new_code_cell(source)
    if cell_type == "markdown":
        return nbformat.v4.new_markdown_cell(source)
    if cell_type == "raw":
        return nbformat.v4.new_raw_cell(source)
    raise UsageError(f"cell_type {cell_type!r} is not one of {', '.join(CELL_TYPES)}")


def check_range(start: int, stop: int | None, n: int) -> range:
    """Resolve run_all's [start, stop) like a Python slice, but refuse a range outside the notebook."""
    if n == 0:
        return range(0)  # nothing to run, whatever was asked
    lo = start + n if start < 0 else start
    if not 0 <= lo < n:
        raise CellIndexError(start, n)
    hi = n if stop is None else stop + n if stop < 0 else stop
    if hi > n:
        raise UsageError(
            f"cannot run up to cell {hi - 1}: the notebook has {n} cells "
            f"(valid: 0 to {n - 1}, or negative indices counting from the end)"
        )
    if hi <= lo:
        raise UsageError(f"the range ends (at cell {hi - 1}) before it starts (at cell {lo}); nothing to run")
    return range(lo, hi)


def runnable(cell: NotebookNode) -> bool:
    """Whether run_all runs the cell: code, not blank, not tagged skip-execution (as nbclient decides)."""
    tags = cell.get("metadata", {}).get("tags", [])
    return cell.get("cell_type") == "code" and bool(cell_source(cell).strip()) and SKIP_TAG not in tags


def ensure_ids(nb: NotebookNode) -> None:
    """Give a 4.4-and-older notebook cell ids by upgrading it to 4.5, as JupyterLab does on save."""
    if nb.nbformat == 4 and nb.nbformat_minor >= 5 and all(map(operator.contains, nb.cells, itertools.repeat("id"))):
        return
    mark_unknown()  # every cell may get an id: the store compares them all
    nb.nbformat, nb.nbformat_minor = 4, max(nb.nbformat_minor, 5)
    taken = {c["id"] for c in nb.cells if "id" in c}
    for cell in nb.cells:
        if "id" not in cell:
            new_id = nbformat.v4.new_code_cell().id
            while new_id in taken:
                new_id = nbformat.v4.new_code_cell().id
            cell["id"] = new_id
            taken.add(new_id)
