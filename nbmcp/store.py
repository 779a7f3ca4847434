"""The local store: one `.ipynb` file, read and written safely.

The file on disk is the truth. Every edit runs as

    lock -> stat -> reload if the file is not what we last saw -> apply -> atomic write -> remember

and every read stats first, so nbmcp never answers from a stale copy and never overwrites a change
made by an editor, git or another process.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from json.encoder import encode_basestring as _encode_str  # json's C escaping
from pathlib import Path
from typing import Any, Protocol, TypeVar

import nbformat
from filelock import FileLock, Timeout
from nbformat import NotebookNode

from .errors import LockTimeoutError, NotebookFormatError, NotebookWriteError

__all__ = [
    "EDIT_ATTEMPTS",
    "LOCK_TIMEOUT",
    "PARSE_RETRY_SECONDS",
    "TEMP_MARKER",
    "Fingerprint",
    "LocalStore",
    "NotebookStore",
    "dumps_notebook",
    "lock_dir",
    "new_notebook",
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
#: tick, so its bytes are hashed instead of trusting the stat (git's "racily clean" rule).
RACY_WINDOW_NS = 100_000_000
#: How many times an edit is re-applied when the file keeps changing under it before giving up.
EDIT_ATTEMPTS = 5


@dataclass(frozen=True)
class Fingerprint:
    """What we last saw of the file: its stat identity plus a hash of its bytes."""

    mtime_ns: int
    size: int
    inode: int
    digest: str
    seen_at_ns: int

    def same_stat(self, st: os.stat_result) -> bool:
        return (st.st_mtime_ns, st.st_size, st.st_ino) == (self.mtime_ns, self.size, self.inode)

    def trusted(self, st: os.stat_result) -> bool:
        """True when the stat alone proves the file is unchanged."""
        return self.same_stat(st) and st.st_mtime_ns + RACY_WINDOW_NS < self.seen_at_ns


def lock_dir() -> Path:
    """The per-user folder holding nbmcp's lock files (never the user's notebook folder)."""
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


def _for_disk(nb: NotebookNode) -> dict[str, Any]:
    """What nbformat.v4.writes encodes (split_lines, strip_transient), copying only what changes."""
    # Attribute access where nbformat uses it, so a notebook it rejects fails here too (and goes to it).
    top = dict(nb)
    top["metadata"] = {k: v for k, v in nb.metadata.items() if k not in _TRANSIENT}
    cells = []
    for cell in nb.cells:
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
        cells.append(disk)
    top["cells"] = cells
    return top


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
    """Parse bytes into a v4 notebook, or raise NotebookFormatError saying why."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NotebookFormatError(path, f"not UTF-8 text: {exc}") from exc
    if not text.strip():
        raise NotebookFormatError(path, "the file is empty")
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise NotebookFormatError(path, f"not JSON: {exc}") from exc
    if not isinstance(raw, dict) or ("cells" not in raw and "worksheets" not in raw) or "nbformat" not in raw:
        raise NotebookFormatError(path, "JSON without the 'nbformat' and 'cells' keys of a notebook")
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
            self._write(new_notebook())
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

    def changed_on_disk(self) -> bool:
        """True when the file's bytes differ from what we last read or wrote."""
        with self._mutex:
            if self._seen is None:
                return True
            try:
                st = os.stat(self.path)
            except FileNotFoundError:
                return True
            if self._seen.trusted(st):
                return False
            return hashlib.sha256(self._read_bytes()).hexdigest() != self._seen.digest

    def edit(self, apply: Callable[[NotebookNode], T]) -> T:
        """Apply `apply` to the freshest notebook under the lock and save the result atomically.

        If `apply` raises, nothing is written and the in-memory copy is dropped, so a half-applied
        change never reaches the disk or a later read. If the file changes while the change is being
        applied (an editor does not take our lock), the change is applied again to the new content
        instead of overwriting it; `apply` must therefore depend only on the notebook it is given.
        """
        with self._locked():
            for _ in range(EDIT_ATTEMPTS):
                nb = self._refresh()
                try:
                    result = apply(nb)
                except BaseException:
                    self._forget()
                    raise
                if self._write(nb, expected=self._seen):
                    return result
                logger.info("%s changed on disk while an edit was applied; applying it again", self.path)
                self._forget()
        raise NotebookWriteError(
            f"{self.path} kept changing on disk during {EDIT_ATTEMPTS} attempts to save; nothing was written"
        )

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

    def _read_bytes(self) -> bytes:
        with open(self.path, "rb") as f:
            return f.read()

    def _refresh(self) -> NotebookNode:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise NotebookWriteError(f"{self.path} does not exist (was it deleted or moved?)") from None
        if self._nb is not None and self._seen is not None and self._seen.trusted(st):
            return self._nb
        deadline = time.monotonic() + PARSE_RETRY_SECONDS
        while True:
            seen_at = time.time_ns()
            st = os.stat(self.path)
            data = self._read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            if self._nb is not None and self._seen is not None and digest == self._seen.digest:
                self._remember(st, digest, seen_at)
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
            self._remember(st, digest, seen_at)
            return nb

    def _remember(self, st: os.stat_result, digest: str, seen_at_ns: int) -> None:
        self._seen = Fingerprint(st.st_mtime_ns, st.st_size, st.st_ino, digest, seen_at_ns)

    def _forget(self) -> None:
        self._nb = None
        self._seen = None

    def _write(self, nb: NotebookNode, expected: Fingerprint | None = None) -> bool:
        """Save `nb`; returns False, writing nothing, if the file no longer matches `expected`."""
        data = dumps_notebook(nb)
        target = Path(os.path.realpath(self.path))  # write through a symlink to its target
        try:
            mode = os.stat(target).st_mode & 0o7777
        except FileNotFoundError:
            mode = 0o666 & ~_UMASK

        def unchanged() -> bool:
            # Last look just before the rename: an external save since our read must not be lost.
            if expected is None:
                return True
            try:
                return expected.same_stat(os.stat(target))
            except FileNotFoundError:
                return False

        try:
            if not self._write_atomic(target, data, mode, unchanged):
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
                f.write(data)
                f.truncate()
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            raise NotebookWriteError(f"cannot write {target}: {exc}") from exc
        st = os.stat(self.path)
        self._nb = nb
        self._remember(st, hashlib.sha256(data).hexdigest(), time.time_ns())
        return True

    @staticmethod
    def _write_atomic(target: Path, data: bytes, mode: int, still_ok: Callable[[], bool]) -> bool:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TEMP_MARKER, dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fchmod(f.fileno(), mode)
                os.fsync(f.fileno())
            if not still_ok():
                os.unlink(tmp)
                return False
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return True


def _read_umask() -> int:
    # os.umask can only be read by setting it; do it once, at import, before any thread runs.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()
