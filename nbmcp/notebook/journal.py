"""The undo journal: what nbmcp changed in each notebook, and how to take it back (issue 15).

One file per notebook, in nbmcp's per-user state folder (never beside the notebook), named after a
hash of the notebook's resolved path. Each line is one change, as JSON, with what is needed to invert
it: the cell before and after (id included) and where it was. Entries are appended by the edit that
made the change, under the notebook's lock and after the file was written, so two nbmcp processes on
one notebook keep one journal in step with the file.

Undo never overwrites someone else's later change: before a change is taken back, the cells it
touched must be as nbmcp left them (`invert` compares them and raises `UndoConflictError`). Outputs
written by executions are not journaled, and undo keeps them: undoing a source change restores the
source and leaves the cell's current outputs.

The journal is bounded: at most MAX_JOURNAL_ENTRIES changes and MAX_JOURNAL_BYTES bytes per notebook.
When a change would pass a bound, the oldest changes are dropped down to TRIM_TO of both bounds. A
change too large to record alone (a deleted cell with big images) is recorded as a barrier that undo
cannot go past.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import os
import secrets
import tempfile
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
from nbformat import NotebookNode

from ..errors import UndoConflictError

__all__ = [
    "BARRIER",
    "MAX_JOURNAL_BYTES",
    "MAX_JOURNAL_ENTRIES",
    "STATE_DIR_ENV",
    "Entry",
    "Journal",
    "clear_outputs_entry",
    "conflicts",
    "delete_entry",
    "insert_entry",
    "invert",
    "move_entry",
    "source_entry",
    "state_dir",
]

logger = logging.getLogger(__name__)

#: Changes kept per notebook; older ones are dropped (undo cannot reach them).
MAX_JOURNAL_ENTRIES = 100
#: Bytes of journal kept per notebook (deleted cells are stored whole, outputs included).
MAX_JOURNAL_BYTES = 8 * 1024 * 1024
#: A full journal drops its oldest changes down to this fraction of both bounds at once, so that
#: every later edit costs an append, not a rewrite of the whole journal.
TRIM_TO = 0.75
#: Environment variable naming the state folder (tests, or to keep the journal elsewhere).
STATE_DIR_ENV = "NBMCP_STATE_DIR"
#: The kind of an entry that stands for a change that could not be recorded.
BARRIER = "barrier"
#: Format version of a journal line.
_VERSION = 1


def state_dir() -> Path:
    """nbmcp's per-user state folder: $NBMCP_STATE_DIR, else the platform's (XDG_STATE_HOME/nbmcp on Linux)."""
    override = os.environ.get(STATE_DIR_ENV)
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_state_dir("nbmcp", appauthor=False))


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _new_id() -> str:
    return secrets.token_hex(4)


@dataclass(frozen=True)
class Entry:
    """One change nbmcp made to a notebook: its kind, a line for people, and what inverts it."""

    kind: str
    """insert, overwrite, edit, delete, move, clear_outputs (or barrier: a change not recorded)."""
    summary: str
    data: dict[str, Any]
    time: str = field(default_factory=_now)
    """When it was made, ISO 8601 UTC."""
    id: str = field(default_factory=_new_id)
    """The change's id (8 hex digits): `undo` and `nbmcp undo --change` take back that one change."""

    def cell_ids(self) -> list[str]:
        """The ids of the cells the change touched."""
        if "cells" in self.data:
            return [str(c["cell_id"]) for c in self.data["cells"]]
        if "cell" in self.data:
            return [str(self.data["cell"].get("id"))]
        if "cell_id" in self.data:
            return [str(self.data["cell_id"])]
        return []

    def to_line(self, notebook: Path) -> bytes:
        record = {"v": _VERSION, "id": self.id, "kind": self.kind, "time": self.time, "summary": self.summary}
        record |= {"notebook": str(notebook), "data": self.data}
        return (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")

    @classmethod
    def from_line(cls, line: bytes) -> Entry:
        """The entry a journal line holds; a barrier when the line cannot be read (a torn write).

        A line written before changes had ids gets one made from its bytes, the same on every read.
        """
        line_id = hashlib.sha256(line).hexdigest()[:8]
        try:
            record = json.loads(line)
            if record.get("v") != _VERSION:
                raise ValueError(f"journal format {record.get('v')!r}")
            kind, summary, data, when = record["kind"], record["summary"], record["data"], record["time"]
            return cls(str(kind), str(summary), dict(data), str(when), str(record.get("id") or line_id))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return barrier(f"an unreadable journal line ({exc})", line_id)


def _complete_lines(data: bytes) -> list[bytes]:
    """The journal's non-blank lines, each with its newline.

    A last piece without a newline is left out: another process may be appending it right now
    (`nbmcp history` reads without the lock), or a crash tore it; the next append ends it with a
    newline, and from then on it reads as a barrier.
    """
    pieces = data.split(b"\n")[:-1]
    return [piece + b"\n" for piece in pieces if piece.strip()]


def barrier(why: str, entry_id: str | None = None) -> Entry:
    """An entry undo stops at: a change that happened but could not be recorded."""
    return Entry(BARRIER, f"not recorded: {why}; undo cannot go past this change", {}, id=entry_id or _new_id())


@dataclass(frozen=True)
class _Known:
    """What this process knows of the journal file after its own last write: enough to append blind.

    Valid while the file is the one it describes: the same inode and size, ending with the line written
    last. Another writer changes the size (an append grows the file, a drop or a trim shrinks it) or
    replaces the file (a new inode); a file that kept all three was not touched.
    """

    inode: int
    size: int
    newlines: int
    last: bytes

    def describes(self, fd: int, st: os.stat_result) -> bool:
        """Whether the file open at `fd`, whose stat is `st`, is still as described."""
        if (st.st_ino, st.st_size) != (self.inode, self.size):
            return False
        return os.pread(fd, len(self.last), self.size - len(self.last)) == self.last


class Journal:
    """The journal file of one notebook. Write it only while holding the notebook's lock."""

    def __init__(self, notebook: Path | str) -> None:
        self.notebook = Path(notebook).resolve()
        key = hashlib.sha256(str(self.notebook).encode()).hexdigest()[:24]
        self.path = state_dir() / "journal" / f"{key}.jsonl"
        #: The file as this object last wrote it, so that an append need not read it (issue 23).
        self._known: _Known | None = None

    def entries(self) -> list[Entry]:
        """Every recorded change, oldest first."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        return [Entry.from_line(line) for line in _complete_lines(data)]

    def append(self, entry: Entry) -> None:
        """Record `entry` as the newest change, dropping the oldest ones beyond the bounds.

        The common case is one `write` to the end of the file. The file is read only when this object
        did not write it last (another nbmcp process, `nbmcp history --drop`, a torn line) or when a
        bound is reached.
        """
        line = entry.to_line(self.notebook)
        if len(line) > MAX_JOURNAL_BYTES:
            size = len(line)
            entry = barrier(f"{entry.summary} ({size} bytes, more than the journal's {MAX_JOURNAL_BYTES})")
            line = entry.to_line(self.notebook)
        known, self._known = self._known, None  # unknown until this append is done
        fd = self._open_for_append()
        try:
            st = os.fstat(fd)
            data: bytes | None = None
            if known is not None and known.describes(fd, st):
                size, newlines, torn = known.size, known.newlines, b""
            else:
                data = _read_all(fd)
                # A torn last line (a crash while appending) must stay a line of its own (read as a barrier).
                torn = b"\n" if data and not data.endswith(b"\n") else b""
                data += torn
                size, newlines = len(data), data.count(b"\n")
            if newlines < MAX_JOURNAL_ENTRIES and size + len(line) <= MAX_JOURNAL_BYTES:
                # The common case costs an append, not a rewrite of the journal.
                _write_all(fd, torn + line)
                self._known = _Known(st.st_ino, size + len(line), newlines + 1, line)
                return
            if data is None:
                data = _read_all(fd)
        finally:
            os.close(fd)
        lines = [*_complete_lines(data), line]
        total = 0
        keep: list[bytes] = []
        max_entries, max_bytes = int(MAX_JOURNAL_ENTRIES * TRIM_TO), int(MAX_JOURNAL_BYTES * TRIM_TO)
        for old in reversed(lines):
            if keep and (len(keep) == max_entries or total + len(old) > max_bytes):
                break
            keep.append(old)
            total += len(old)
        self._replace(b"".join(reversed(keep)))

    def drop_last(self, n: int) -> None:
        """Forget the `n` newest changes (they were undone)."""
        lines = _complete_lines(self.path.read_bytes())
        self._replace(b"".join(lines[: max(len(lines) - n, 0)]))

    def drop(self, ids: Collection[str]) -> int:
        """Forget the changes with these ids (undone one by one, or no longer applying); returns how many."""
        lines = _complete_lines(self.path.read_bytes()) if self.path.exists() else []
        keep = [line for line in lines if Entry.from_line(line).id not in ids]
        if len(keep) != len(lines):
            self._replace(b"".join(keep))
        return len(lines) - len(keep)

    def clear(self) -> int:
        """Forget every change; returns how many there were."""
        n = len(self.entries())
        self._known = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        return n

    def _open_for_append(self) -> int:
        # Readable too: the file is read back when it is not as this object left it.
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        try:
            return os.open(self.path, flags, 0o666)
        except FileNotFoundError:
            self._ensure_dir()
            return os.open(self.path, flags, 0o666)

    def _ensure_dir(self) -> None:
        # The journal holds notebook contents: readable by its owner only.
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _replace(self, data: bytes) -> None:
        self._known = None
        if not data:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            return
        self._ensure_dir()
        fd, tmp = tempfile.mkstemp(prefix=self.path.name, suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                inode = os.fstat(f.fileno()).st_ino
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        # Whole lines only (`_complete_lines`): the last one ends the file.
        last = data[data.rfind(b"\n", 0, len(data) - 1) + 1 :]
        self._known = _Known(inode, len(data), data.count(b"\n"), last)


def _read_all(fd: int) -> bytes:
    """The whole file open at `fd`, whatever its offset."""
    size = os.fstat(fd).st_size
    chunks: list[bytes] = []
    at = 0
    while True:
        piece = os.pread(fd, max(size - at, 0) + 65536, at)
        if not piece:
            return b"".join(chunks)
        chunks.append(piece)
        at += len(piece)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


# -- entries for each kind of change (built inside the edit, from the notebook it changes) ------------


def _src(cell: NotebookNode | dict[str, Any]) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def _first_line(source: str, width: int = 60) -> str:
    stripped = source.strip()
    line = stripped.splitlines()[0] if stripped else "(empty)"
    return line if len(line) <= width else line[: width - 3] + "..."


def _name(index: int, cell_id: str | None) -> str:
    return f"cell {index} (id {cell_id})" if cell_id else f"cell {index}"


def _id_at(nb: NotebookNode, i: int) -> str | None:
    return nb.cells[i].get("id") if 0 <= i < len(nb.cells) else None


def insert_entry(nb: NotebookNode, index: int) -> Entry:
    """The cell at `index` was just inserted."""
    cell = nb.cells[index]
    summary = f"inserted {cell.cell_type} {_name(index, cell.get('id'))}: {_first_line(_src(cell))}"
    return Entry("insert", summary, {"cell": copy.deepcopy(dict(cell)), "index": index})


def source_entry(kind: str, nb: NotebookNode, index: int, before: str) -> Entry | None:
    """The source of the cell at `index` was just replaced (`kind` overwrite) or edited; None if unchanged."""
    cell = nb.cells[index]
    after = _src(cell)
    if after == before:
        return None
    verb = "overwrote" if kind == "overwrite" else "edited"
    summary = f"{verb} the source of {_name(index, cell.get('id'))}: {_first_line(after)}"
    data = {"cell_id": cell.get("id"), "index": index, "before": before, "after": after}
    return Entry(kind, summary, data)


def delete_entry(nb: NotebookNode, index: int) -> Entry:
    """The cell at `index` is about to be deleted (call before removing it)."""
    cell = nb.cells[index]
    summary = f"deleted {cell.get('cell_type')} {_name(index, cell.get('id'))}: {_first_line(_src(cell))}"
    data = {
        "cell": copy.deepcopy(dict(cell)),
        "index": index,
        "prev_id": _id_at(nb, index - 1),
        "next_id": _id_at(nb, index + 1),
    }
    return Entry("delete", summary, data)


def move_entry(nb: NotebookNode, old: int, new: int, prev_before: str | None) -> Entry | None:
    """The cell now at `new` was just moved from `old`; `prev_before` preceded it there. None if it stayed."""
    if old == new:
        return None
    cell = nb.cells[new]
    summary = f"moved {cell.get('cell_type')} cell (id {cell.get('id')}) from index {old} to {new}"
    data = {
        "cell_id": cell.get("id"),
        "from": old,
        "to": new,
        "prev_before": prev_before,
        "prev_after": _id_at(nb, new - 1),
    }
    return Entry("move", summary, data)


def clear_outputs_entry(nb: NotebookNode, indices: list[int]) -> Entry | None:
    """The outputs of the code cells at `indices` are about to be cleared; None if none had any."""
    cells = [
        {
            "cell_id": nb.cells[i].get("id"),
            "index": i,
            "outputs": copy.deepcopy(list(nb.cells[i].get("outputs", []))),
            "execution_count": nb.cells[i].get("execution_count"),
        }
        for i in indices
        if nb.cells[i].get("outputs") or nb.cells[i].get("execution_count") is not None
    ]
    if not cells:
        return None
    if len(cells) == 1:
        c = cells[0]
        summary = f"cleared {len(c['outputs'])} output(s) of {_name(c['index'], c['cell_id'])}"
    else:
        summary = f"cleared the outputs of {len(cells)} cells"
    return Entry("clear_outputs", summary, {"cells": cells})


# -- taking a change back -------------------------------------------------------------------------


def _find(nb: NotebookNode, cell_id: str | None) -> int | None:
    for i, cell in enumerate(nb.cells):
        if cell.get("id") == cell_id:
            return i
    return None


def _require(nb: NotebookNode, cell_id: str | None, what: str) -> int:
    i = _find(nb, cell_id)
    if i is None:
        raise UndoConflictError(f"cell id {cell_id}", f"({what}) is no longer in the notebook: it was deleted since")
    return i


def _insert_after(nb: NotebookNode, cell: NotebookNode, prev_id: str | None, next_id: str | None, index: int) -> int:
    """Put `cell` back where it was: after its old neighbour, else before the other one, else at `index`."""
    if prev_id is None:
        at = 0
    elif (p := _find(nb, prev_id)) is not None:
        at = p + 1
    elif next_id is not None and (q := _find(nb, next_id)) is not None:
        at = q
    else:
        at = min(index, len(nb.cells))
    nb.cells.insert(at, cell)
    return at


def invert(nb: NotebookNode, entry: Entry) -> None:
    """Take `entry` back in `nb`, or raise UndoConflictError if a cell it touched changed since."""
    try:
        _invert(nb, entry)
    except UndoConflictError as exc:
        raise UndoConflictError(exc.cell, exc.reason, change=entry.summary, change_id=entry.id) from None


def conflicts(nb: NotebookNode, entries: list[Entry]) -> dict[str, UndoConflictError]:
    """The changes among `entries` (oldest first) that undo can no longer take back, by id, with why.

    Newest first, each change is tried on a scratch copy of `nb` as undo would try it, after taking
    back the newer ones that still apply: a change whose cells were edited by a later nbmcp change is
    not stale (undoing both works), one whose cell was deleted in an editor or lost to a `git
    checkout` is. `nb` is not changed.
    """
    # Undo replaces whole keys of a cell (source, outputs) or whole cells in the list, so a copy of
    # the list and of each cell's top-level dict is enough to keep `nb` as it is.
    scratch = nbformat.NotebookNode(nb)
    scratch["cells"] = [nbformat.NotebookNode(cell) for cell in nb.cells]
    stale: dict[str, UndoConflictError] = {}
    for entry in reversed(entries):
        if entry.kind == BARRIER:
            continue
        try:
            invert(scratch, entry)
        except UndoConflictError as exc:
            stale[entry.id] = exc
    return stale


def _invert(nb: NotebookNode, entry: Entry) -> None:
    d = entry.data
    if entry.kind == "insert":
        cell_id = d["cell"].get("id")
        i = _require(nb, cell_id, "the cell nbmcp inserted")
        cell = nb.cells[i]
        if cell.get("cell_type") != d["cell"].get("cell_type") or _src(cell) != _src(d["cell"]):
            raise UndoConflictError(_name(i, cell_id), "was changed since nbmcp inserted it")
        del nb.cells[i]
    elif entry.kind in ("overwrite", "edit"):
        i = _require(nb, d["cell_id"], "the cell nbmcp edited")
        if _src(nb.cells[i]) != d["after"]:
            raise UndoConflictError(_name(i, d["cell_id"]), "was changed since nbmcp edited it (its source differs)")
        # Only the source goes back: outputs are the executions' (issue 15), metadata someone else's.
        nb.cells[i]["source"] = d["before"]
    elif entry.kind == "delete":
        cell_id = d["cell"].get("id")
        if (again := _find(nb, cell_id)) is not None:
            raise UndoConflictError(_name(again, cell_id), "is in the notebook again (someone restored it)")
        _insert_after(nb, nbformat.from_dict(copy.deepcopy(d["cell"])), d["prev_id"], d["next_id"], d["index"])
    elif entry.kind == "move":
        i = _require(nb, d["cell_id"], "the cell nbmcp moved")
        if _id_at(nb, i - 1) != d["prev_after"]:
            raise UndoConflictError(_name(i, d["cell_id"]), "was moved since (or a cell was put right before it)")
        cell = nb.cells.pop(i)
        _insert_after(nb, cell, d["prev_before"], None, d["from"])
    elif entry.kind == "clear_outputs":
        found = [(c, _require(nb, c["cell_id"], "a cell whose outputs nbmcp cleared")) for c in d["cells"]]
        for c, i in found:
            cell = nb.cells[i]
            if cell.get("outputs") or cell.get("execution_count") is not None:
                raise UndoConflictError(_name(i, c["cell_id"]), "has new outputs since (it was run after the clear)")
        for c, i in found:
            nb.cells[i]["outputs"] = nbformat.from_dict(copy.deepcopy(c["outputs"]))
            nb.cells[i]["execution_count"] = c["execution_count"]
    else:
        raise UndoConflictError("this change", f"is of a kind this nbmcp does not know ({entry.kind!r})")
