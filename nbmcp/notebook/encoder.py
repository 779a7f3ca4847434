"""The notebook's bytes: `dumps_notebook`, the `IncrementalWriter` that re-encodes only changed cells,
and the change hints (`mark_changed`, `mark_unknown`) an edit gives it.

Written notebooks are formatted the way Jupyter writes them (indent 1, sorted keys, trailing
newline) so that git diffs stay small, and an edit's cost follows its change, not the notebook's
size (issues 8 and 14).
"""

from __future__ import annotations

import itertools
import operator
import threading
from collections.abc import Callable, Collection
from json.encoder import encode_basestring as _encode_str  # json's C escaping
from typing import Any, TypeVar

import nbformat
from nbformat import NotebookNode

from .chunks import Chunks

__all__ = [
    "TRANSIENT_METADATA",
    "IncrementalWriter",
    "dumps_notebook",
    "file_format_of",
    "mark_changed",
    "mark_unknown",
    "noting_changes",
]

T = TypeVar("T")

#: What the running edit (on this thread) said it changed: `_NOT_SAID`, `_UNKNOWN` or a set of cell ids.
_hints = threading.local()
_NOT_SAID: Any = object()
_UNKNOWN: Any = object()


def mark_changed(*cells: NotebookNode) -> None:
    """Say, from inside an edit's `apply`, which cells it changes in place, so only they are re-encoded.

    An `apply` that calls it must name every existing cell it changes (cells it adds need not be
    named); one that calls neither this nor `mark_unknown` gets every cell compared with its last
    saved form. Outside an edit, or in a store that keeps no per-cell bytes, it does nothing.
    """
    said = getattr(_hints, "changed", None)
    if said is None or said is _UNKNOWN:
        return
    if said is _NOT_SAID:
        said = _hints.changed = set()
    said.update(map(id, cells))


def mark_unknown() -> None:
    """Say, from inside an edit's `apply`, that it changed cells it did not name: every cell is compared."""
    if getattr(_hints, "changed", None) is not None:
        _hints.changed = _UNKNOWN


def noting_changes(apply: Callable[[NotebookNode], T], nb: NotebookNode) -> tuple[T, set[int] | None]:
    """Run an edit's `apply` on `nb`; also return the ids of the cells it said it changed (None: not said).

    What `apply` says with `mark_changed` or `mark_unknown` is collected here; an edit run inside
    another keeps the outer one's hints as they were.
    """
    outer = getattr(_hints, "changed", None)
    _hints.changed = _NOT_SAID
    try:
        result = apply(nb)
        said = _hints.changed
    finally:
        _hints.changed = outer
    return result, said if isinstance(said, set) else None


def file_format_of(nb: NotebookNode) -> tuple[int, bool]:
    """The notebook's nbformat_minor and whether its cells have ids: what `IncrementalWriter.file_format` keeps."""
    return int(nb.get("nbformat_minor", 0)), any("id" in cell for cell in nb.cells)


def dumps_notebook(nb: NotebookNode) -> bytes:
    """Serialize the way Jupyter does (indent 1, sorted keys, trailing newline) for small git diffs.

    The bytes are those of `nbformat.v4.writes`, produced about three times faster (issue 8, where an
    edit's cost is mostly this): nbformat deep-copies the whole notebook to split its multi-line
    strings, then encodes it with the json module's pure-Python encoder (the C one cannot indent).
    Here only the containers that change are copied, and a small encoder made for this one format
    (indent 1, sorted keys, `ensure_ascii=False`) uses json's C string escaping. Anything it does not
    know (bytes, keys that are not strings, a cycle) goes to nbformat, which serializes it or raises.
    """
    # nbformat.writes() would also run the JSON-schema validator on every save, which costs more
    # than the write itself on large notebooks; notebooks are validated when read instead.
    try:
        text = _encode(_for_disk(nb), "\n")
    except Exception:
        text = nbformat.v4.writes(nb)
    if not text.endswith("\n"):
        text += "\n"
    return text.encode("utf-8")


class _Unsupported(TypeError):
    """A value the fast encoder leaves to nbformat."""


#: MIME types that nbformat stores as lists of lines although they are not text/* (nbformat.v4.rwbase).
_SPLIT_MIMES = frozenset({"application/javascript", "image/svg+xml"})
#: Metadata nbformat never writes to a file (nbformat.v4.rwbase.strip_transient).
TRANSIENT_METADATA = ("orig_nbformat", "orig_nbformat_minor", "signature")
_INF = float("inf")


def _split_bundle(data: dict[str, Any]) -> dict[str, Any]:
    return {
        k: v.splitlines(True) if isinstance(v, str) and (k.startswith("text/") or k in _SPLIT_MIMES) else v
        for k, v in data.items()
    }


def _cell_for_disk(cell: NotebookNode) -> dict[str, Any]:
    """One cell as nbformat.v4.writes encodes it (split_lines, no transient metadata), copying only what changes."""
    # Attribute access where nbformat uses it, so a notebook it rejects fails here too (and goes to it).
    disk = dict(cell)
    source = cell.get("source", None)
    if isinstance(source, str):
        disk["source"] = source.splitlines(True)
    attachments = cell.get("attachments", {})
    if attachments:
        disk["attachments"] = {k: _split_bundle(v) for k, v in attachments.items()}
    if cell.cell_type == "code":
        outputs = []
        for output in cell.outputs:
            if output.output_type in {"execute_result", "display_data"}:
                if "data" in output:
                    output = dict(output, data=_split_bundle(output["data"]))
            elif output.output_type == "stream" and isinstance(output.text, str):
                output = dict(output, text=output.text.splitlines(True))
            outputs.append(output)
        disk["outputs"] = outputs
    if "trusted" in cell.metadata:
        disk["metadata"] = {k: v for k, v in cell.metadata.items() if k != "trusted"}
    return disk


def _for_disk(nb: NotebookNode) -> dict[str, Any]:
    """What nbformat.v4.writes encodes (split_lines, strip_transient), copying only what changes."""
    top = dict(nb)
    top["metadata"] = {k: v for k, v in nb.metadata.items() if k not in TRANSIENT_METADATA}
    top["cells"] = [_cell_for_disk(cell) for cell in nb.cells]
    return top


def _copy_containers(o: Any) -> Any:
    """A copy of `o`'s dicts and lists that shares its leaves (strings, numbers): what a cell was."""
    if isinstance(o, dict):
        return {k: _copy_containers(v) for k, v in o.items()}
    if isinstance(o, list):
        return [_copy_containers(v) for v in o]
    return o  # a tuple is kept as it is, and never equals the list copy: such a cell is always re-encoded


#: Indentation of a cell in the file: the cells list is the second level of indent-1 JSON.
_CELL_NEWLINE = "\n  "


class IncrementalWriter:
    """Serializes a notebook the way `dumps_notebook` does, re-encoding only the cells that changed.

    An edit changes one cell of thousands, so its cost should follow its change (issue 14). Cells are
    followed by identity, so a move, an insert or a delete re-encodes only the cells that changed.
    When the caller says which cells it changed (`changed`), only those are re-encoded. Otherwise
    each cell is compared with a copy of its dicts and lists kept from the last write (sharing its
    leaves, so the comparison runs in C and mostly meets the very same string objects), and a cell
    still equal to its copy reuses its bytes.

    Each cell's bytes are a slice of a buffer: the last compacted file image, or the cell's own bytes
    from when it was last encoded. A write is those slices in order (`Chunks`), never joined: cells
    that follow each other in one buffer are one slice. Once there are more than `MAX_RUNS` slices
    (after the first write, or after many cells changed) they are joined into one new image.

    One blind spot of `==`: a value replaced in place by an equal one of another type (1 by 1.0 or
    True) is not noticed; nbmcp never does that, and nbformat's schema treats them alike.
    """

    #: More slices than this are joined into one buffer: writing and comparing stay a few calls.
    MAX_RUNS = 256

    def __init__(self) -> None:
        #: (nbformat_minor, cell ids kept) of the file as it was read, written back so, whatever the
        #: notebook in memory became (ids given to follow its cells): None writes the notebook as it is.
        self.file_format: tuple[int, bool] | None = None
        self.clear()

    def clear(self) -> None:
        """Forget every cell (the notebook was reloaded or is unknown)."""
        self._cells: list[NotebookNode] = []  # held, so that their ids keep naming them
        self._copies: list[Any] = []
        self._bufs: list[bytes] = []  # the buffer holding each cell's bytes
        self._starts: list[int] = []  # where they start in it
        self._lengths: list[int] = []  # and how long they are
        self._bounds: list[int] = []  # where each run of cells written as one slice starts (and n)
        #: The bytes around the cells list, and a copy of what they encode (all but the cells), to reuse them.
        self._frame_cache: tuple[bytes, bytes] | None = None
        self._frame_key: tuple[int | None, dict[str, Any]] | None = None
        #: Bytes encoded by the last call (not reused from earlier ones).
        self.encoded_bytes = 0

    def seed(self, nb: NotebookNode, data: bytes) -> bool:
        """Take `data`, the file `nb` was just parsed from, as the last write: its cells' bytes are reused.

        Only for a file laid out as nbformat writes it (indent 1, sorted keys): each cell is then the
        text between two lines `  {` and `  }`, found with `bytes.find`. Without this, the first edit
        after a (re)load encodes every cell (0.3 s at 10,000 cells). A cell's bytes in the file are an
        encoding of what was parsed from them, so reusing them is exact even where another program
        wrote them a little differently (a source kept as one string, say). False (nothing taken) for
        any other layout; the first write then encodes every cell.
        """
        self.clear()
        cells = list(nb.cells)
        if not cells:
            return False
        try:
            head, tail = _frame(nb)
        except Exception:
            return False
        opening, closing = head + _OPEN_CELLS, _CLOSE_CELLS + tail
        end = len(data) - len(closing)
        if not (data.startswith(opening) and data.endswith(closing) and data.startswith(b"\n  }", end - 4)):
            return False
        starts = [len(opening)]
        find, at = data.find, len(opening)
        for _ in range(len(cells) - 1):
            k = find(_CELL_BOUNDARY, at, end)
            if k < 0:
                return False
            at = k + 8  # past "\n  }" and the separator ",\n  ": the next cell's "{"
            starts.append(at)
        if find(_CELL_BOUNDARY, at, end) >= 0:
            return False  # more cells in the file than were parsed: not this layout after all
        lengths = list(map(operator.sub, map(operator.sub, starts[1:], _SEP_LENGTHS), starts[:-1]))
        lengths.append(end - starts[-1])
        self._cells, self._copies = cells, [None] * len(cells)  # no copy: a full comparison re-encodes
        self._bufs, self._starts, self._lengths, self._bounds = [data] * len(cells), starts, lengths, [0, len(cells)]
        return True

    def dumps(self, nb: NotebookNode, changed: Collection[int] | None = None) -> bytes:
        """The file's bytes, joined (see `encode`)."""
        return self.encode(nb, changed).tobytes()

    def encode(self, nb: NotebookNode, changed: Collection[int] | None = None) -> Chunks:
        """The file's bytes; `changed` holds the `id()` of every cell changed in place since the last call.

        Cells added since then need not be named; with `changed=None` every cell is compared.
        """
        try:
            return self._encode(nb, changed)
        except Exception:
            self.clear()
            return Chunks.of(dumps_notebook(self._as_file(nb)))  # nbformat serializes what we cannot, or raises

    def _as_file(self, nb: NotebookNode) -> NotebookNode:
        """`nb` in the file's own format (see `file_format`): a copy of its top level and cells, if needed."""
        if self.file_format is None:
            return nb
        minor, ids = self.file_format
        copy = NotebookNode(nb, nbformat_minor=minor)
        if not ids:
            copy["cells"] = [NotebookNode({k: v for k, v in cell.items() if k != "id"}) for cell in nb.cells]
        return copy

    def _encode(self, nb: NotebookNode, changed_ids: Collection[int] | None) -> Chunks:
        cells = list(nb.cells)
        old_cells = self._cells
        n, m = len(cells), len(old_cells)
        # Cells followed by identity: the same ones at the start and at the end (found in C), and in
        # between (an insert, a delete or a move) looked up one by one.
        prefix = next(itertools.compress(itertools.count(), map(operator.is_not, cells, old_cells)), min(n, m))
        suffix = next(
            itertools.compress(
                itertools.count(), map(operator.is_not, reversed(cells[prefix:]), reversed(old_cells[prefix:]))
            ),
            min(n, m) - prefix,
        )
        # middle[j]: the index among the last write's cells of cell prefix + j, or -1 for a new cell.
        where = dict(zip(map(id, old_cells[prefix : m - suffix]), itertools.count(prefix)))
        middle = [where.get(id(cell), -1) for cell in cells[prefix : n - suffix]]

        def spliced(old: list[Any]) -> list[Any]:
            return [*old[:prefix], *(old[k] if k >= 0 else None for k in middle), *old[m - suffix :]]

        copies, bufs = spliced(self._copies), spliced(self._bufs)
        starts, lengths = spliced(self._starts), spliced(self._lengths)
        if changed_ids is not None:
            said = changed_ids.__contains__
            changed = list(itertools.compress(itertools.count(), map(said, map(id, cells)))) if changed_ids else []
            changed += (i for i, k in enumerate(middle, prefix) if k < 0)
        else:
            changed = list(itertools.compress(itertools.count(), map(operator.ne, copies, cells)))  # in C
        self.encoded_bytes = 0
        drop_id = self.file_format is not None and not self.file_format[1]
        for i in changed:
            copies[i] = _copy_containers(cells[i])
            disk = _cell_for_disk(cells[i])
            if drop_id:  # the file keeps its cells without ids (`file_format`)
                disk.pop("id", None)
            bufs[i] = _encode(disk, _CELL_NEWLINE).encode("utf-8")
            starts[i], lengths[i] = 0, len(bufs[i])
            self.encoded_bytes += lengths[i]
        head, tail = self._frame_bytes(nb)
        self._cells, self._copies = cells, copies
        if not cells:
            self._bufs, self._starts, self._lengths, self._bounds = [], [], [], []
            return Chunks.of(head + b"[]" + tail)
        # A run: cells that follow each other in one buffer (with the separator between them there).
        ends = list(map(operator.add, starts, lengths))
        if prefix == n == m and self._bounds:
            # The same cells in the same places: the runs are the last ones, cut around each changed cell.
            bounds = sorted({*self._bounds, *changed, *(i + 1 for i in changed)})
        else:
            follows = map(
                operator.and_,
                map(operator.is_, bufs[1:], bufs),
                map(operator.eq, starts[1:], map(operator.add, ends, _SEP_LENGTHS)),
            )
            bounds = [0, *itertools.compress(itertools.count(1), map(operator.not_, follows)), n]
        opening, closing = head + _OPEN_CELLS, _CLOSE_CELLS + tail
        parts: list[tuple[bytes, int, int]] = [(opening, 0, len(opening))]
        for a, b in itertools.pairwise(bounds):
            if a:
                parts.append(_SEP_PART)
            parts.append((bufs[a], starts[a], ends[b - 1]))
        parts.append((closing, 0, len(closing)))
        chunks = Chunks(parts)
        if len(bounds) - 1 > self.MAX_RUNS:
            # Join once into a new image of the file, and find every cell in it.
            data = chunks.tobytes()
            bufs = [data] * n
            starts = list(itertools.accumulate(map(operator.add, lengths[:-1], _SEP_LENGTHS), initial=len(opening)))
            chunks = Chunks.of(data)
            bounds = [0, n]
        self._bufs, self._starts, self._lengths, self._bounds = bufs, starts, lengths, bounds
        return chunks

    def _frame_bytes(self, nb: NotebookNode) -> tuple[bytes, bytes]:
        """`_frame` of `nb`, reused while the notebook's top level (its metadata, nbformat) is unchanged."""
        minor = self.file_format[0] if self.file_format is not None else None
        now = (minor, {k: v for k, v in nb.items() if k != "cells"})
        if self._frame_cache is None or self._frame_key != now:  # compared in C, like the cells
            self._frame_cache = _frame(nb, minor)
            self._frame_key = (minor, _copy_containers(now[1]))
        return self._frame_cache


def _frame(nb: NotebookNode, minor: int | None = None) -> tuple[bytes, bytes]:
    """The file's bytes before and after the cells list, as `_encode` writes the top level (sorted keys).

    `minor`: the nbformat_minor written instead of the notebook's own (`IncrementalWriter.file_format`).
    """
    top = dict(nb)
    if minor is not None:
        top["nbformat_minor"] = minor
    top["metadata"] = {k: v for k, v in nb.metadata.items() if k not in TRANSIENT_METADATA}
    del top["cells"]
    if not all(isinstance(k, str) for k in top):
        raise _Unsupported("a key that is not a string")
    before: list[bytes] = []
    after: list[bytes] = []
    for key in sorted(top):
        part = (_encode_str(key) + ": " + _encode(top[key], "\n ")).encode("utf-8")
        (before if key < "cells" else after).append(part)
    head = b"{\n " + b"".join(p + b",\n " for p in before) + b'"cells": '
    tail = b"".join(b",\n " + p for p in after) + b"\n}\n"
    return head, tail


#: Around the cells in the file (when there are some).
_OPEN_CELLS = b"[\n  "
_CLOSE_CELLS = b"\n ]"
#: Between two cells in the file.
_CELL_SEP = b",\n  "
#: The end of one cell and the start of the next: the only place a line is `  }` then `  {`.
_CELL_BOUNDARY = b"\n  }" + _CELL_SEP + b"{"
_SEP_PART = (_CELL_SEP, 0, len(_CELL_SEP))
_SEP_LENGTHS = itertools.repeat(len(_CELL_SEP))


def _encode(o: Any, newline: str) -> str:
    """JSON text of `o` as json.dumps(o, indent=1, sort_keys=True, ensure_ascii=False) writes it.

    `newline` is a newline plus the indentation of the current level. The order of the checks is
    json.encoder's (True before int, subclasses encoded as their base type).
    """
    if isinstance(o, str):
        return _encode_str(o)
    if o is None:
        return "null"
    if o is True:
        return "true"
    if o is False:
        return "false"
    if isinstance(o, int):
        return int.__repr__(o)
    if isinstance(o, float):
        if o != o:
            return "NaN"
        if o == _INF:
            return "Infinity"
        if o == -_INF:
            return "-Infinity"
        return float.__repr__(o)
    inner = newline + " "
    if isinstance(o, (list, tuple)):
        if not o:
            return "[]"
        return "[" + inner + ("," + inner).join([_encode(v, inner) for v in o]) + newline + "]"
    if isinstance(o, dict):
        if not o:
            return "{}"
        if not all(isinstance(k, str) for k in o):
            raise _Unsupported("a key that is not a string")
        items = [_encode_str(k) + ": " + _encode(v, inner) for k, v in sorted(o.items())]
        return "{" + inner + ("," + inner).join(items) + newline + "}"
    raise _Unsupported(type(o).__name__)
