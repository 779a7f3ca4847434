"""The local store: one `.ipynb` file, read and written safely.

The file on disk is the truth. Every edit runs as

    lock -> stat -> reload if the file is not what we last saw -> apply -> atomic write -> remember

and every read stats first, so nbmcp never answers from a stale copy and never overwrites a change
made by an editor, git or another process. The pieces it uses live beside it: the bytes written
(`encoder`) and read (`reader`), what we last saw of the file (`fingerprint`), the atomic save
(`atomic`) and the allocator tuning for large files (`memory`).

Just before the final rename the store looks once more (bytes included when the stat is racy) and, if
an editor saved meanwhile, applies the edit again to the new content; on Linux the rename is a swap
that notices a save landing after that look (`atomic`), so writers with different lock folders, or an
editor that takes no lock, lose nothing (tested with 2 x 60 parallel appends). Only regular files are
notebooks: a FIFO, device or folder is refused before it is opened. The lock is a file in a per-user
folder (`lock_dir()`, `NBMCP_LOCK_DIR`), never beside the notebook, so another tool can cooperate by
taking the same lock; one not had within LOCK_TIMEOUT seconds fails the edit with nothing changed.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import random
import stat as stat_mod
import threading
import time
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any, BinaryIO, Protocol, TypeVar, cast

import nbformat
from filelock import Timeout
from nbformat import NotebookNode

from ..errors import LockTimeoutError, NotebookFormatError, NotebookWriteError
from .atomic import TEMP_MARKER, file_mode, write_atomic
from .chunks import Chunks
from .encoder import IncrementalWriter, file_format_of, noting_changes
from .fingerprint import Fingerprint
from .lock import NotebookLock
from .memory import release_free_memory
from .reader import parse_notebook

__all__ = [
    "EDIT_ATTEMPTS",
    "EDIT_BACKOFF",
    "INLINE_EDIT_BYTES",
    "LOCK_TIMEOUT",
    "PARSE_RETRY_SECONDS",
    "TRIM_AFTER_BYTES",
    "CachedStore",
    "LocalStore",
    "NotebookStore",
    "lock_dir",
    "new_notebook",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds to wait for another process to release the notebook's lock before giving up.
LOCK_TIMEOUT = 10.0
#: Seconds to keep retrying a file that does not parse (an editor caught mid-write) before reporting it.
PARSE_RETRY_SECONDS = 1.0
#: How many times an edit is re-applied when the file keeps changing under it before giving up.
#: Writers that share no lock (two lock folders, an editor) can collide often; see EDIT_BACKOFF.
EDIT_ATTEMPTS = 50
#: Longest pause (seconds) before applying an edit again; each pause is random up to a doubling bound,
#: so two writers that keep colliding fall out of step instead of colliding forever.
EDIT_BACKOFF = 0.05
#: Notebooks up to this size are edited on the caller's thread when no wait is needed (`edit_now`):
#: writing and syncing them takes about a millisecond, less than the hop to a worker thread and back.
INLINE_EDIT_BYTES = 256 * 1024
#: A write that encoded more than this many bytes (the first write after a reload encodes every
#: cell) gives the freed memory back to the system afterwards.
TRIM_AFTER_BYTES = 4_000_000


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


_locks: dict[str, NotebookLock] = {}
_locks_guard = threading.Lock()


def _lock_for(resolved: Path, timeout: float) -> NotebookLock:
    """One lock per notebook per process, shared by every store on that notebook."""
    key = hashlib.sha256(str(resolved).encode()).hexdigest()[:24]
    with _locks_guard:
        lock = _locks.get(key)
        if lock is None:
            folder = lock_dir()
            folder.mkdir(parents=True, exist_ok=True)
            lock = NotebookLock(folder / f"{key}.lock", timeout=timeout)
            _locks[key] = lock
        return lock


def new_notebook() -> NotebookNode:
    """An empty nbformat 4.5 notebook with Python kernel metadata."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
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


class CachedStore:
    """What both stores share: the notebook kept in memory, read under the store's mutex.

    A store sets `_mutex` (an `RLock`) and defines `_refresh`, which returns the notebook it keeps
    after loading it again when its source (the file, or the server's copy) changed.
    """

    _mutex: Any

    def read(self) -> NotebookNode:
        """The current notebook, loaded again only if it changed since we last saw it.

        The returned object is shared: treat it as read-only and change the notebook through `edit`.
        """
        with self._mutex:
            return self._refresh()

    def _refresh(self) -> NotebookNode:
        raise NotImplementedError


class LocalStore(CachedStore):
    """A notebook file on the local disk, with cross-process locking and atomic writes."""

    def __init__(self, path: Path | str, *, lock_timeout: float = LOCK_TIMEOUT, keep_format: bool = False) -> None:
        self.path = Path(path).absolute()
        #: Write the file back in the format it was read in (its nbformat_minor, cells without ids if it had
        #: none), whatever the notebook in memory became: a headless run adds no git noise (issue 26).
        self.keep_format = keep_format
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
                saved, result = self._attempt(apply, self._refresh(verify_racy=False), on_saved)
                if saved:
                    return cast(T, result)
                logger.info("%s changed on disk while an edit was applied; applying it again", self.path)
        raise NotebookWriteError(
            f"{self.path} kept changing on disk during {EDIT_ATTEMPTS} attempts to save; nothing was written"
        )

    def edit_now(
        self, apply: Callable[[NotebookNode], T], *, on_saved: Callable[[], None] | None = None
    ) -> tuple[bool, T | None]:
        """`edit`, on this thread, when nothing has to be waited for; else `(False, None)`: then call `edit`.

        Done only for a notebook of at most INLINE_EDIT_BYTES whose lock is free and whose file is, by
        its stat, the one last seen (no reload), and only if the save succeeds at the first attempt (no
        pause before another). Its cost is then a small write and its fsync, so an event loop may call it
        and skip the hop to a worker thread, which cost more than the edit itself (issue 23). Returns
        `(True, what apply returned)` once saved; if `apply` raises, as `edit` does.
        """
        seen = self._seen
        if seen is None or seen.size > INLINE_EDIT_BYTES or not self._mutex.acquire(blocking=False):
            return False, None
        try:
            if not self._lock.try_acquire():
                return False, None
            try:
                nb, seen = self._nb, self._seen
                try:
                    if nb is None or seen is None or not seen.same_stat(self._stat()):
                        return False, None  # to be reloaded first: `edit` does it
                except (OSError, NotebookFormatError):
                    return False, None  # `edit` says what is wrong
                return self._attempt(apply, nb, on_saved)
            finally:
                self._lock.release()
        finally:
            self._mutex.release()

    def replace(self, nb: NotebookNode, *, file_format: tuple[int, bool] | None = None) -> None:
        """Write `nb` as the whole file, atomically under the lock, whatever the file held (or if none).

        For a file nbmcp produces from another (`nbmcp exec -o OUT`): an old OUT, even one that no
        longer parses, is simply replaced, as papermill replaces its output notebook. `file_format`
        (`file_format_of` the notebook it came from): written in that format.
        """
        if not self.path.parent.is_dir():
            raise NotebookWriteError(f"cannot create {self.path}: folder {self.path.parent} does not exist")
        with self._locked():
            self._writer.clear()
            self._writer.file_format = file_format
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

    def _attempt(
        self, apply: Callable[[NotebookNode], T], nb: NotebookNode, on_saved: Callable[[], None] | None
    ) -> tuple[bool, T | None]:
        """Apply `apply` to `nb` and save it (under the lock); `(False, None)` if the file changed meanwhile."""
        try:
            result, changed = noting_changes(apply, nb)
        except BaseException:
            self._forget()
            raise
        try:
            saved = self._write(nb, expected=self._seen, changed=changed)
        except BaseException:
            self._forget()  # the change is in memory only: the next look reads the file again
            raise
        if not saved:
            self._forget()
            return False, None
        if on_saved is not None:
            on_saved()
        return True, result

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._mutex:
            try:
                self._lock.acquire(self.lock_timeout)
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
        fd = self._open_fd()
        try:
            return expected.same_as_file(fd)
        finally:
            os.close(fd)

    def _open(self) -> BinaryIO:
        return os.fdopen(self._open_fd(), "rb")

    def _open_fd(self) -> int:
        # O_NONBLOCK: a FIFO put in the file's place after the stat must not block the open.
        fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
        mode = os.fstat(fd).st_mode
        if not stat_mod.S_ISREG(mode):
            os.close(fd)
            raise NotebookFormatError(self.path, f"not a regular file ({_file_kind(mode)}); a notebook is a file")
        return fd

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
            if self.keep_format:
                self._writer.file_format = file_format_of(nb)
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
        # Write through a symlink to its target (one lstat when the notebook is no symlink; a folder on
        # the way that is one needs no resolving: the temp file goes beside the notebook either way).
        target = Path(os.path.realpath(self.path)) if os.path.islink(self.path) else self.path
        mode = file_mode(target)

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
            if not write_atomic(target, data, mode, unchanged, expected, create=create):
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
