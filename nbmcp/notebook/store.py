"""The local store: one `.ipynb` file, read and written safely.

The file on disk is the truth. Every edit runs as

    lock -> stat -> reload if the file is not what we last saw -> apply -> atomic write -> remember

and every read stats first, so nbmcp never answers from a stale copy and never overwrites a change
made by an editor, git or another process.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import itertools
import json
import logging
import operator
import os
import random
import stat as stat_mod
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from json.encoder import encode_basestring as _encode_str  # json's C escaping
from pathlib import Path
from typing import Any, BinaryIO, Protocol, TypeVar

import nbformat
from filelock import FileLock, Timeout
from nbformat import NotebookNode

from ..errors import LockTimeoutError, NotebookFormatError, NotebookWriteError
from .chunks import Chunks

__all__ = [
    "COARSE_RACY_WINDOW_NS",
    "EDIT_ATTEMPTS",
    "EDIT_BACKOFF",
    "LOCK_TIMEOUT",
    "MMAP_THRESHOLD",
    "PARSE_RETRY_SECONDS",
    "RACY_WINDOW_NS",
    "TEMP_MARKER",
    "TRIM_AFTER_BYTES",
    "Fingerprint",
    "IncrementalWriter",
    "LocalStore",
    "NotebookStore",
    "dumps_notebook",
    "lock_dir",
    "mark_changed",
    "mark_unknown",
    "new_notebook",
    "parse_notebook",
    "release_free_memory",
    "tune_memory",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds to wait for another process to release the notebook's lock before giving up.
LOCK_TIMEOUT = 10.0
#: Seconds to keep retrying a file that does not parse (an editor caught mid-write) before reporting it.
PARSE_RETRY_SECONDS = 1.0
#: Marks nbmcp's temporary files, so a later start can remove those a killed process left behind.
TEMP_MARKER = ".nbmcp-tmp"
#: A file modified this close to the moment we looked at it may change again within the same mtime
#: tick, so its bytes are compared instead of trusting the stat (git's "racily clean" rule). Linux
#: file systems stamp files with the kernel's coarse clock (one tick: 1 to 10 ms); this is well past it.
RACY_WINDOW_NS = 100_000_000
#: The window for a file whose mtime has no sub-second part: a file system with 1 s (HFS+, some network
#: shares) or 2 s (FAT) timestamps, where two saves within the same second or two look alike.
COARSE_RACY_WINDOW_NS = 2_000_000_000
#: How many times an edit is re-applied when the file keeps changing under it before giving up.
#: Writers that share no lock (two lock folders, an editor) can collide often; see EDIT_BACKOFF.
EDIT_ATTEMPTS = 50
#: Longest pause (seconds) before applying an edit again; each pause is random up to a doubling bound,
#: so two writers that keep colliding fall out of step instead of colliding forever.
EDIT_BACKOFF = 0.05


#: A write that encoded more than this many bytes (the first write after a reload encodes every
#: cell) gives the freed memory back to the system afterwards.
TRIM_AFTER_BYTES = 4_000_000
#: The temp file's write buffer: slices smaller than this are gathered into fewer writes.
WRITE_BUFFER = 1 << 18
#: A replaced file from this size up is deleted on a thread of its own, after the save returns.
DISCARD_ON_THREAD_BYTES = 1 << 20
#: Allocations from this size up get their own memory map, given back to the system when freed.
MMAP_THRESHOLD = 1 << 20

_libc: Any = None


def _glibc() -> Any:
    """The C library when it is glibc (Linux), else False."""
    global _libc
    if _libc is None:
        _libc = False
        if sys.platform.startswith("linux"):
            import ctypes

            with contextlib.suppress(AttributeError, OSError):
                libc = ctypes.CDLL(None)
                if libc.gnu_get_libc_version and libc.malloc_trim and libc.mallopt:
                    _libc = libc
    return _libc


def tune_memory() -> None:
    """Have the C allocator give large freed buffers back to the system at once (glibc; else nothing).

    A write builds the whole file's bytes (15 MB for 10,000 cells) and frees the previous ones. glibc
    raises its map threshold to the size of each freed map, after which such buffers come from the
    heap and stay in the process when freed: the server's memory grew by the file's size a few times
    over (issue 14). A fixed threshold keeps them maps. Call it once, early, in a server process.
    """
    libc = _glibc()
    if libc:
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)


def release_free_memory() -> None:
    """Give the C heap's free pages back to the system (glibc; else nothing)."""
    libc = _glibc()
    if libc:
        libc.malloc_trim(0)


_M_MMAP_THRESHOLD = -3  # mallopt(3)


def _racy_window(mtime_ns: int) -> int:
    return COARSE_RACY_WINDOW_NS if mtime_ns % 1_000_000_000 == 0 else RACY_WINDOW_NS


@dataclass(frozen=True)
class Fingerprint:
    """What we last saw of the file: its stat identity and when we looked.

    The bytes themselves are kept by the store (to compare when the stat cannot be trusted), so no
    hash of the whole file is computed on each save (issue 14).
    """

    mtime_ns: int
    size: int
    inode: int
    seen_at_ns: int

    def same_stat(self, st: os.stat_result) -> bool:
        return (st.st_mtime_ns, st.st_size, st.st_ino) == (self.mtime_ns, self.size, self.inode)

    def trusted(self, st: os.stat_result) -> bool:
        """True when the stat alone proves the file is unchanged.

        Only when the file's mtime was older than one timestamp tick at the moment we looked: a save
        after that moment gets a later mtime. A save within the same tick may keep mtime, size and
        even the inode (ext4 reuses freed inodes at once; issue 13), so then the bytes must be compared.
        """
        return self.same_stat(st) and self.settled_at_ns < self.seen_at_ns

    @property
    def settled_at_ns(self) -> int:
        """When the tick of the file's mtime is surely over: a look after it can trust the stat."""
        return self.mtime_ns + _racy_window(self.mtime_ns)


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


def lock_dir() -> Path:
    """The per-user folder holding nbmcp's lock files (never the user's notebook folder).

    NBMCP_LOCK_DIR overrides it; processes with different lock folders do not exclude each other and
    are kept from losing each other's saves by the content check before each rename only.
    """
    override = os.environ.get("NBMCP_LOCK_DIR")
    if override:
        return Path(override)
    from jupyter_core.paths import jupyter_runtime_dir

    return Path(jupyter_runtime_dir()) / "nbmcp-locks"


_locks: dict[str, FileLock] = {}
_locks_guard = threading.Lock()


def _lock_for(resolved: Path, timeout: float) -> FileLock:
    """One `FileLock` per notebook per process, shared by every store on that notebook."""
    key = hashlib.sha256(str(resolved).encode()).hexdigest()[:24]
    with _locks_guard:
        lock = _locks.get(key)
        if lock is None:
            folder = lock_dir()
            folder.mkdir(parents=True, exist_ok=True)
            # thread_local=False: an edit may acquire on one worker thread; the lock is reentrant
            # per object and the in-process mutex below serializes our own threads.
            lock = FileLock(folder / f"{key}.lock", timeout=timeout, thread_local=False)
            _locks[key] = lock
        return lock


def new_notebook() -> NotebookNode:
    """An empty nbformat 4.5 notebook with Python kernel metadata."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


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
_TRANSIENT = ("orig_nbformat", "orig_nbformat_minor", "signature")
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
    top["metadata"] = {k: v for k, v in nb.metadata.items() if k not in _TRANSIENT}
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
        self.clear()

    def clear(self) -> None:
        """Forget every cell (the notebook was reloaded or is unknown)."""
        self._cells: list[NotebookNode] = []  # held, so that their ids keep naming them
        self._copies: list[Any] = []
        self._bufs: list[bytes] = []  # the buffer holding each cell's bytes
        self._starts: list[int] = []  # where they start in it
        self._lengths: list[int] = []  # and how long they are
        self._bounds: list[int] = []  # where each run of cells written as one slice starts (and n)
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
            return Chunks.of(dumps_notebook(nb))  # nbformat serializes what the fast encoder does not know, or raises

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
        for i in changed:
            copies[i] = _copy_containers(cells[i])
            bufs[i] = _encode(_cell_for_disk(cells[i]), _CELL_NEWLINE).encode("utf-8")
            starts[i], lengths[i] = 0, len(bufs[i])
            self.encoded_bytes += lengths[i]
        head, tail = _frame(nb)
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


def _frame(nb: NotebookNode) -> tuple[bytes, bytes]:
    """The file's bytes before and after the cells list, as `_encode` writes the top level (sorted keys)."""
    top = dict(nb)
    top["metadata"] = {k: v for k, v in nb.metadata.items() if k not in _TRANSIENT}
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


def parse_notebook(data: bytes, path: Path) -> NotebookNode:
    """Parse bytes into a v4 notebook, or raise NotebookFormatError saying why.

    A v4 notebook takes the fast path: `json.loads` building NotebookNodes directly, then nbformat's
    own rejoin_lines and strip_transient, as `nbformat.reads` does, but without its JSON-schema
    validation of every cell, which costs several times the parse (issue 14) and only ever led to a
    logged warning here. What nbmcp relies on is checked instead (cells are objects with a type; code
    cells have a list of outputs). Anything else (nbformat 3, odd shapes) goes through `nbformat.reads`.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NotebookFormatError(path, f"not UTF-8 text: {exc}") from exc
    if not text.strip():
        raise NotebookFormatError(path, "the file is empty")
    try:
        raw = json.loads(text, object_hook=_Node)
    except json.JSONDecodeError as exc:
        raise NotebookFormatError(path, f"not JSON: {exc}") from exc
    except RecursionError as exc:
        raise NotebookFormatError(path, "JSON nested too deeply to be a notebook") from exc
    if not isinstance(raw, dict) or ("cells" not in raw and "worksheets" not in raw) or "nbformat" not in raw:
        raise NotebookFormatError(path, "JSON without the 'nbformat' and 'cells' keys of a notebook")
    if _plain_v4(raw):
        try:
            _rejoin_and_strip(raw)  # type: ignore[arg-type]  # object_hook made every object a NotebookNode
            return raw  # type: ignore[return-value]
        except (AttributeError, TypeError):
            pass  # an odd shape in an output or attachment: nbformat says what is wrong with it
    try:
        holder: dict[str, Any] = {}
        nb = nbformat.reads(text, as_version=4, capture_validation_error=holder)
    except Exception as exc:  # nbformat raises a zoo of types for malformed content
        raise NotebookFormatError(path, f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(nb.get("cells"), list):
        raise NotebookFormatError(path, "'cells' is not a list")
    original = nb.metadata.get("orig_nbformat")
    if original is not None and original < 4:
        logger.info("%s is nbformat %s; upgraded to 4 as read (saved as 4 at the first change)", path, original)
    if holder.get("ValidationError") is not None:
        # Jupyter opens such notebooks with a warning; refusing them would strand the user.
        logger.warning("%s does not fully match the nbformat schema: %s", path, holder["ValidationError"].message)
    return nb


def _plain_v4(raw: dict[str, Any]) -> bool:
    """Whether `raw` has the shape nbmcp relies on, so it can skip nbformat's full validation."""
    if raw.get("nbformat") != 4 or not isinstance(raw.get("nbformat_minor"), int):
        return False
    if not isinstance(raw.get("metadata"), dict):
        return False
    cells = raw.get("cells")
    if not isinstance(cells, list):
        return False
    for cell in cells:
        if not isinstance(cell, dict) or not isinstance(cell.get("metadata"), dict):
            return False
        kind = cell.get("cell_type")
        source = cell.get("source")
        if kind not in _CELL_TYPES or not isinstance(source, (str, list)):
            return False
        if kind == "code":
            outputs = cell.get("outputs")
            if not isinstance(outputs, list) or not all(
                isinstance(o, dict) and isinstance(o.get("output_type"), str) for o in outputs
            ):
                return False
    return True


_CELL_TYPES = frozenset({"code", "markdown", "raw"})


class _Node(NotebookNode):
    """A NotebookNode built without running Python code: json.loads makes one per JSON object.

    NotebookNode's own __init__ is a Python function that only calls dict's; calling dict's directly
    takes a third off a large notebook's parse. Attribute access and item assignment are NotebookNode's.
    """

    __init__ = dict.__init__


_set = dict.__setitem__  # NotebookNode's own __setitem__ runs Python code; a string needs none of it


def _is_json_mime(mime: str) -> bool:
    return mime == "application/json" or (mime.startswith("application/") and mime.endswith("+json"))


def _rejoin_bundle(data: dict[str, Any]) -> None:
    for key, value in list(data.items()):
        if not _is_json_mime(key) and isinstance(value, list) and all(isinstance(line, str) for line in value):
            _set(data, key, "".join(value))


def _rejoin_and_strip(nb: NotebookNode) -> None:
    """nbformat.v4's rejoin_lines and strip_transient, in place, with item access.

    The same rules (nbformat.v4.rwbase, checked against it by the tests), but nbformat's attribute
    access runs a Python `__getattr__` per use, which made up most of a large notebook's reload.
    """
    metadata = nb["metadata"]
    for key in _TRANSIENT:
        metadata.pop(key, None)
    for cell in nb["cells"]:
        source = cell.get("source")
        if isinstance(source, list):
            _set(cell, "source", "".join(source))
        for attachment in cell.get("attachments", {}).values():
            _rejoin_bundle(attachment)
        if cell.get("cell_type") == "code":
            for output in cell.get("outputs", []):
                output_type = output.get("output_type", "")
                if output_type in {"execute_result", "display_data"}:
                    _rejoin_bundle(output.get("data", {}))
                elif output_type and isinstance(output.get("text", ""), list):
                    _set(output, "text", "".join(output["text"]))
        cell["metadata"].pop("trusted", None)


class NotebookStore(Protocol):
    """What the session needs of a store: `LocalStore` here, `ContentsStore` on a Jupyter server."""

    @property
    def path(self) -> Path | str:
        """Where the notebook is, as shown to users."""

    def read(self) -> NotebookNode: ...

    def read_if_unchanged(self) -> NotebookNode | None:
        """The cached notebook when that needs no I/O beyond a stat, else None (then call `read`)."""

    def edit(self, apply: Callable[[NotebookNode], T]) -> T: ...

    def create_if_missing(self) -> bool: ...

    def changed_on_disk(self) -> bool: ...

    def close(self) -> None: ...


class LocalStore:
    """A notebook file on the local disk, with cross-process locking and atomic writes."""

    def __init__(self, path: Path | str, *, lock_timeout: float = LOCK_TIMEOUT) -> None:
        self.path = Path(path).absolute()
        self.lock_timeout = lock_timeout
        self._lock = _lock_for(self.path.resolve(), lock_timeout)
        self._mutex = threading.RLock()
        self._nb: NotebookNode | None = None
        self._seen: Fingerprint | None = None
        #: The file's bytes as we last read or wrote them: compared when a stat cannot be trusted.
        self._data: Chunks | None = None
        self._writer = IncrementalWriter()

    # -- public API -------------------------------------------------------------------------------

    @property
    def fingerprint(self) -> Fingerprint | None:
        """What we last read or wrote (None before the first read)."""
        return self._seen

    def exists(self) -> bool:
        return self.path.exists()

    def create_if_missing(self) -> bool:
        """Create an empty notebook if there is no file; return True if one was created."""
        with self._locked():
            self.remove_stale_temp_files()
            if self.path.exists():
                return False
            if not self.path.parent.is_dir():
                raise NotebookWriteError(f"cannot create {self.path}: folder {self.path.parent} does not exist")
            if not self._write(new_notebook(), create=True):
                return False  # another program created it meanwhile: theirs is kept
            logger.info("created empty notebook %s", self.path)
            return True

    def read(self) -> NotebookNode:
        """The current notebook, reloaded only if the file changed since we last saw it.

        The returned object is shared: treat it as read-only and change the notebook through `edit`.
        """
        with self._mutex:
            return self._refresh()

    def read_if_unchanged(self) -> NotebookNode | None:
        """The cached notebook if a stat alone proves the file unchanged, else None; never blocks.

        Costs one `stat`, so async callers use it on the event loop and go to a worker thread for
        `read` only when it returns None (issue 8: the thread hop was most of a read tool's cost).
        """
        if not self._mutex.acquire(blocking=False):
            return None  # an edit or a reload is under way
        try:
            if self._nb is None or self._seen is None:
                return None
            try:
                st = os.stat(self.path)
            except OSError:
                return None
            return self._nb if self._seen.trusted(st) else None
        finally:
            self._mutex.release()

    def stat_changed(self) -> bool:
        """True when the file's stat is not what we last read or wrote: one `stat`, no lock, no bytes read.

        For the watcher, whose events follow each of our own saves: those keep the stat we remember.
        A save by another program that kept the stat too (same size, within the same timestamp tick)
        is not seen here; the next tool call's check compares the bytes and finds it.
        """
        seen = self._seen
        try:
            return seen is None or not seen.same_stat(os.stat(self.path))
        except OSError:
            return True

    def racy_for(self) -> float:
        """Seconds until the stat we remember can be trusted alone (0 if it already is, or if there is none).

        Until then a same-stat save by another program is possible, and only comparing bytes rules it out.
        """
        seen = self._seen
        if seen is None or seen.settled_at_ns < seen.seen_at_ns:
            return 0.0
        return max(0.0, (seen.settled_at_ns - time.time_ns()) / 1e9)

    def changed_on_disk(self) -> bool:
        """True when the file's bytes differ from what we last read or wrote."""
        with self._mutex:
            if self._seen is None:
                return True
            try:
                return not self._unchanged(self._seen)
            except OSError:
                return True

    def edit(self, apply: Callable[[NotebookNode], T], *, on_saved: Callable[[], None] | None = None) -> T:
        """Apply `apply` to the freshest notebook under the lock and save the result atomically.

        If `apply` raises, nothing is written and the in-memory copy is dropped, so a half-applied
        change never reaches the disk or a later read. If the file changes while the change is being
        applied (an editor does not take our lock), the change is applied again to the new content
        instead of overwriting it; `apply` must therefore depend only on the notebook it is given.
        `on_saved` runs after the write, still under the lock, so what it records (the undo journal,
        issue 15) is in step with the file for every nbmcp process.
        """
        with self._locked():
            for attempt in range(EDIT_ATTEMPTS):
                if attempt:
                    time.sleep(random.uniform(0, min(EDIT_BACKOFF, 0.001 * 2**attempt)))
                # A stat equal to what we saw is enough here even when racy: the last look before the
                # rename compares the bytes, and a change found then applies the edit again.
                nb = self._refresh(verify_racy=False)
                outer = getattr(_hints, "changed", None)
                _hints.changed = _NOT_SAID
                try:
                    result = apply(nb)
                    said = _hints.changed
                except BaseException:
                    self._forget()
                    raise
                finally:
                    _hints.changed = outer
                changed = said if isinstance(said, set) else None
                try:
                    saved = self._write(nb, expected=self._seen, changed=changed)
                except BaseException:
                    self._forget()  # the change is in memory only: the next look reads the file again
                    raise
                if saved:
                    if on_saved is not None:
                        on_saved()
                    return result
                logger.info("%s changed on disk while an edit was applied; applying it again", self.path)
                self._forget()
        raise NotebookWriteError(
            f"{self.path} kept changing on disk during {EDIT_ATTEMPTS} attempts to save; nothing was written"
        )

    def replace(self, nb: NotebookNode) -> None:
        """Write `nb` as the whole file, atomically under the lock, whatever the file held (or if none).

        For a file nbmcp produces from another (`nbmcp exec -o OUT`): an old OUT, even one that no
        longer parses, is simply replaced, as papermill replaces its output notebook.
        """
        if not self.path.parent.is_dir():
            raise NotebookWriteError(f"cannot create {self.path}: folder {self.path.parent} does not exist")
        with self._locked():
            self._write(nb)

    def locked(self) -> contextlib.AbstractContextManager[None]:
        """Hold the notebook's lock: no nbmcp process edits it meanwhile (the undo journal uses it)."""
        return self._locked()

    def close(self) -> None:
        """Nothing to release: the lock is held only during an edit."""

    def remove_stale_temp_files(self) -> list[Path]:
        """Delete temp files that a killed nbmcp process left beside the notebook.

        Called under the lock, when no nbmcp process can be in the middle of a write.
        """
        target = Path(os.path.realpath(self.path))
        removed = []
        with contextlib.suppress(OSError):
            for leftover in target.parent.glob(f".{target.name}.*{TEMP_MARKER}"):
                with contextlib.suppress(OSError):
                    leftover.unlink()
                    removed.append(leftover)
        if removed:
            logger.info("removed %d temp file(s) left by an interrupted write", len(removed))
        return removed

    # -- internals --------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._mutex:
            try:
                self._lock.acquire(timeout=self.lock_timeout)
            except Timeout as exc:
                raise LockTimeoutError(self.path, self.lock_timeout) from exc
            try:
                yield
            finally:
                self._lock.release()

    def _stat(self) -> os.stat_result:
        """The notebook's stat; a FIFO, device or folder is refused before anything opens it (issue 13)."""
        st = os.stat(self.path)
        if not stat_mod.S_ISREG(st.st_mode):
            raise NotebookFormatError(self.path, f"not a regular file ({_file_kind(st.st_mode)}); a notebook is a file")
        return st

    def _read_bytes(self) -> bytes:
        with self._open() as f:
            return f.read()

    def _holds(self, expected: Chunks) -> bool:
        """Whether the file holds exactly `expected`, read block by block (no copy of the whole file)."""
        with self._open() as f:
            return expected.same_as_file(f.fileno())

    def _open(self) -> BinaryIO:
        # O_NONBLOCK: a FIFO put in the file's place after the stat must not block the open.
        fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        f = os.fdopen(fd, "rb")
        mode = os.fstat(fd).st_mode
        if not stat_mod.S_ISREG(mode):
            f.close()
            raise NotebookFormatError(self.path, f"not a regular file ({_file_kind(mode)}); a notebook is a file")
        return f

    def _unchanged(self, expected: Fingerprint) -> bool:
        """Whether the file still holds the bytes `expected` describes: a stat, and the bytes when it is racy."""
        st = os.stat(self.path)
        if not expected.same_stat(st):
            return False
        if expected.trusted(st):
            return True
        seen_at = time.time_ns()
        if self._data is None or not self._holds(self._data):
            return False
        # Looked at again, later: the same stat may now be trusted (it was racy only then).
        if self._seen is expected:
            self._seen = Fingerprint(st.st_mtime_ns, st.st_size, st.st_ino, seen_at)
        return True

    def _refresh(self, *, verify_racy: bool = True) -> NotebookNode:
        try:
            st = self._stat()
        except FileNotFoundError:
            raise NotebookWriteError(f"{self.path} does not exist (was it deleted or moved?)") from None
        seen = self._seen
        if self._nb is not None and seen is not None and seen.same_stat(st):
            if not verify_racy or seen.trusted(st):
                return self._nb
            # Racy: compare the bytes, block by block, before reading them all to parse.
            seen_at = time.time_ns()
            if self._data is not None and self._holds(self._data):
                self._remember(st, self._data, seen_at)
                return self._nb
        deadline = time.monotonic() + PARSE_RETRY_SECONDS
        while True:
            seen_at = time.time_ns()
            st = self._stat()
            data = self._read_bytes()
            if self._nb is not None and self._data is not None and self._data.same_as(data):
                self._remember(st, self._data, seen_at)
                return self._nb
            try:
                nb = parse_notebook(data, self.path)
            except NotebookFormatError:
                # An editor may be half-way through writing the file: look again shortly.
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.05)
                continue
            if self._nb is not None:
                logger.info("%s changed on disk; reloaded", self.path)
            self._nb = nb
            self._writer.seed(nb, data)
            self._remember(st, Chunks.of(data), seen_at)
            return nb

    def _remember(self, st: os.stat_result, data: Chunks, seen_at_ns: int) -> None:
        self._seen = Fingerprint(st.st_mtime_ns, st.st_size, st.st_ino, seen_at_ns)
        self._data = data

    def _forget(self) -> None:
        self._nb = None
        self._seen = None
        self._data = None
        self._writer.clear()

    def _write(
        self,
        nb: NotebookNode,
        expected: Fingerprint | None = None,
        changed: Collection[int] | None = None,
        *,
        create: bool = False,
    ) -> bool:
        """Save `nb`; returns False, writing nothing, if the file no longer matches `expected`.

        `changed`: the ids of the cells changed in place since the last write, when the edit said so.
        `create`: only if there is no file (else False): an editor may create it while we do.
        """
        data = self._writer.encode(nb, changed)
        target = Path(os.path.realpath(self.path))  # write through a symlink to its target
        try:
            mode = os.stat(target).st_mode & 0o7777
        except FileNotFoundError:
            mode = 0o666 & ~_UMASK

        def unchanged() -> bool:
            # Last look just before the rename: an external save since our read must not be lost,
            # even one that kept the stat (a save within the same timestamp tick; issue 13).
            if expected is None:
                return True
            try:
                return self._unchanged(expected)
            except FileNotFoundError:
                return False

        try:
            if not self._write_atomic(target, data, mode, unchanged, expected, create=create):
                self._writer.clear()  # it followed `nb`, which did not reach the file
                return False
        except PermissionError:
            # A writable notebook in a read-only folder: no temp file is possible there, so the
            # only way to save is in place (not atomic, but the user asked for it to be saved).
            if not os.access(target, os.W_OK):
                raise NotebookWriteError(f"cannot write {target}: permission denied") from None
            logger.info("cannot create a temp file beside %s; saving it in place", target)
            if not unchanged():
                return False
            with open(target, "r+b") as f:
                data.write_to(f)
                f.truncate()
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            raise NotebookWriteError(f"cannot write {target}: {exc}") from exc
        # The time before the stat: a save by someone else after our rename but before this stat
        # is then within the racy window, and its bytes get compared on the next look.
        seen_at = time.time_ns()
        st = os.stat(self.path)
        self._nb = nb
        self._remember(st, data, seen_at)
        if self._writer.encoded_bytes > TRIM_AFTER_BYTES:
            release_free_memory()  # the whole notebook was encoded, in pieces freed since
        return True

    @staticmethod
    def _write_atomic(
        target: Path,
        data: Chunks,
        mode: int,
        still_ok: Callable[[], bool],
        expected: Fingerprint | None,
        *,
        create: bool = False,
    ) -> bool:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TEMP_MARKER, dir=target.parent)
        try:
            with os.fdopen(fd, "wb", buffering=WRITE_BUFFER) as f:
                data.write_to(f)
                f.flush()
                os.fchmod(f.fileno(), mode)
                os.fsync(f.fileno())
            if not still_ok():
                os.unlink(tmp)
                return False
            if create:
                # A link fails where a rename would replace: a file created meanwhile is never lost.
                try:
                    os.link(tmp, target)
                except FileExistsError:
                    os.unlink(tmp)
                    return False
                except OSError:
                    # No hard links here (some network or FAT file systems): look, then rename.
                    if os.path.lexists(target):
                        os.unlink(tmp)
                        return False
                    os.replace(tmp, target)
                    return True
                os.unlink(tmp)
                return True
            if expected is not None and _exchange(tmp, target):
                # The file we replaced is now at `tmp`. If it is not the one just checked, another
                # writer renamed its save in between: give it back and report the conflict, so that
                # the edit is applied again to that save instead of losing it (issue 13).
                if not expected.same_stat(os.stat(tmp)):
                    _exchange(tmp, target)
                    os.unlink(tmp)
                    return False
                _discard(tmp, len(data))
            else:
                os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return True


def _discard(path: str, size: int) -> None:
    """Delete the file the save replaced; a large one on a thread of its own, after the save has returned.

    Freeing a 15 MB file's blocks takes a few milliseconds that the caller need not wait for. The thread
    is not a daemon, so a normal exit waits for it; after a kill, the file (a temp name) is removed by
    the next start's clean-up.
    """
    if size < DISCARD_ON_THREAD_BYTES:
        os.unlink(path)
        return
    threading.Thread(target=_unlink_quietly, args=(path,), name="nbmcp-discard").start()


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


#: renameat2(2) flag: swap two names atomically (Linux 3.15+; ext4, xfs, btrfs, tmpfs...).
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_renameat2: Any = None


def _exchange(a: str, b: Path) -> bool:
    """Swap the files named `a` and `b` in one step; False where the system cannot (then rename instead).

    A rename cannot check what it replaces, so a save by another writer between our last look and our
    rename would be lost; swapping instead keeps the replaced file, so we can tell whose it was.
    """
    global _renameat2
    if _renameat2 is None:
        _renameat2 = False
        if sys.platform.startswith("linux"):
            import ctypes

            with contextlib.suppress(AttributeError, OSError):
                fn = ctypes.CDLL(None, use_errno=True).renameat2
                fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
                fn.restype = ctypes.c_int
                _renameat2 = fn
    if _renameat2 is False:
        return False
    if _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    import ctypes

    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV):
        return False  # a file system without the swap (some network and overlay ones): rename instead
    if err == errno.ENOENT:
        return False  # the notebook was deleted meanwhile: the rename recreates it
    raise OSError(err, os.strerror(err), str(b))


def _file_kind(mode: int) -> str:
    if stat_mod.S_ISFIFO(mode):
        return "a FIFO"
    if stat_mod.S_ISDIR(mode):
        return "a folder"
    if stat_mod.S_ISCHR(mode) or stat_mod.S_ISBLK(mode):
        return "a device"
    if stat_mod.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _read_umask() -> int:
    # os.umask can only be read by setting it; do it once, at import, before any thread runs.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()
