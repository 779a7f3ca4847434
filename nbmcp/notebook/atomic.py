"""The atomic save: a temp file beside the notebook, swapped or renamed into its place.

A crash at any instant leaves either the old file or the new one. Where the system can swap two
names in one step (Linux `renameat2`), the replaced file is kept long enough to tell whether it was
the one last checked, so a save by another writer in between is never lost (issue 13).
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .chunks import Chunks
from .fingerprint import Fingerprint

__all__ = ["TEMP_MARKER", "WRITE_BUFFER", "discards_done", "file_mode", "write_atomic"]

#: Marks nbmcp's temporary files, so a later start can remove those a killed process left behind.
TEMP_MARKER = ".nbmcp-tmp"
#: The temp file's write buffer: slices smaller than this are gathered into fewer writes.
WRITE_BUFFER = 1 << 18


def file_mode(target: Path) -> int:
    """The mode for the file that replaces `target`: its own, or a new file's under the umask."""
    try:
        return os.stat(target).st_mode & 0o7777
    except FileNotFoundError:
        return 0o666 & ~_UMASK


def write_atomic(
    target: Path,
    data: Chunks,
    mode: int,
    still_ok: Callable[[], bool],
    expected: Fingerprint | None,
    *,
    create: bool = False,
) -> bool:
    """Write `data` to a temp file beside `target` with `mode`, then put it in `target`'s place.

    Returns False, leaving `target` as it was, when `still_ok()` says no just before the rename or
    when the file replaced turns out not to be the one `expected` describes (another writer renamed
    its save in between). `create`: only if there is no `target` (else False).
    """
    fd, tmp = _create_temp(target, mode)
    try:
        try:
            if len(data) <= WRITE_BUFFER:
                _write_all(fd, data.tobytes())  # a small notebook: one write
            else:
                with os.fdopen(fd, "wb", buffering=WRITE_BUFFER, closefd=False) as f:
                    data.write_to(f)
            if mode & _UMASK:
                os.fchmod(fd, mode)  # bits the umask took from the new file's mode
            os.fsync(fd)  # the new bytes are on disk before the rename makes them the notebook
        finally:
            os.close(fd)
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
            _discard(tmp)
        else:
            os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return True


def _create_temp(target: Path, mode: int) -> tuple[int, str]:
    """A new, empty temp file beside `target` (a name no other file has), created with `mode`."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(100):
        tmp = os.path.join(target.parent, f".{target.name}.{secrets.token_hex(4)}{TEMP_MARKER}")
        try:
            return os.open(tmp, flags, mode), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temp file name", str(target.parent))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class _Discarder:
    """Deletes the files saves replaced, on a thread of its own, after each save has returned.

    Freeing the blocks of a file that was just written and synced is not free: 0.1 ms for a small
    notebook on an idle ext4, 1 to 3 ms when the disk is busy, 3 ms for 15 MB (issues 14 and 23). The
    save is complete without it, so the caller does not wait. The thread is a daemon; what it has not
    deleted when Python exits is deleted then (`atexit`), and after a kill the next start's clean-up
    removes the leftovers (temp names).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._paths: list[str] = []
        self._busy = 0  # paths taken by the thread and not yet deleted
        self._thread: threading.Thread | None = None

    def put(self, path: str) -> None:
        with self._cond:
            self._paths.append(path)
            if self._thread is None or not self._thread.is_alive():  # first use, or after a fork
                self._thread = threading.Thread(target=self._run, name="nbmcp-discard", daemon=True)
                self._thread.start()
            self._cond.notify()

    def wait(self, timeout: float) -> bool:
        """Wait until every file handed over so far is deleted; False if some are left after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._paths or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def drain(self) -> None:
        """At exit: delete here what the thread has not taken yet, and wait briefly for what it has."""
        with self._cond:
            paths, self._paths = self._paths, []
            alive = self._thread is not None and self._thread.is_alive()
        for path in paths:
            _unlink_quietly(path)
        if alive:
            self.wait(1.0)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._paths:
                    self._cond.wait()
                paths, self._paths = self._paths, []
                self._busy = len(paths)
            for path in paths:
                _unlink_quietly(path)
            with self._cond:
                self._busy = 0
                self._cond.notify_all()


_discarder = _Discarder()
atexit.register(_discarder.drain)


def _discard(path: str) -> None:
    """Delete the file the save replaced (now at the temp name `path`), after the save has returned."""
    _discarder.put(path)


def discards_done(timeout: float = 5.0) -> bool:
    """Wait until the files replaced by earlier saves are deleted (for tests and tools that list the folder)."""
    return _discarder.wait(timeout)


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


def _read_umask() -> int:
    # os.umask can only be read by setting it; do it once, at import, before any thread runs.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()
