"""The notebook's lock between processes: filelock's `FileLock`, with a quicker first try.

Every nbmcp process that saves a notebook holds its lock, a file in the lock folder, for the few
milliseconds of the save. filelock takes it: it waits (until a timeout), works on every platform and
falls back to a lock of its own on a file system without flock. Each of its acquires also resolves the
path, creates the folder and opens the lock file again, which cost 0.2 to 0.5 ms of a small edit whose
whole cost over a bare atomic save is about 1 ms (issue 23, `python -m tests.bench.edit_ab`).

`try_acquire` is the try without that: flock on a descriptor kept open. It takes the same lock, since
flock excludes one open file from another in one process as between processes, so a holder through
either way keeps out the other. It is only a shortcut: when the lock is held, or when it cannot be
sure (a file system without flock, a lock file removed or replaced since it was opened), it says no,
and the caller waits through filelock.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from filelock import FileLock

try:
    import fcntl
except ImportError:  # Windows: every acquire goes through filelock
    fcntl = None  # type: ignore[assignment]

__all__ = ["NotebookLock"]


class NotebookLock:
    """One notebook's lock file: `try_acquire` at once, or `acquire` waiting; then `release`."""

    def __init__(self, path: Path, *, timeout: float) -> None:
        self.path = path
        #: thread_local=False: an edit may take it on one worker thread and another edit on another;
        #: each store's own mutex keeps its threads one at a time.
        self.file_lock = FileLock(path, timeout=timeout, thread_local=False)
        #: Held while the lock is held through the kept descriptor: one holder in this process at a time.
        self._quick = threading.Lock()
        self._quick_held = False
        self._fd: int | None = None
        self._fd_pid = 0
        self._quick_works = fcntl is not None

    def try_acquire(self) -> bool:
        """Take the lock if it is free, without waiting; False if it is held or this way cannot tell."""
        if not self._quick_works or fcntl is None or not self._quick.acquire(blocking=False):
            return False
        try:
            fd = self._descriptor()
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # another holder
            self._quick.release()
            return False
        except OSError:  # no flock on this file system: filelock knows what to do there
            self._quick_works = False
            self._close()
            self._quick.release()
            return False
        if not self._same_file(fd):
            # The lock file was removed or replaced since it was opened: a holder of the new one would
            # not see this hold. The next try opens the new one.
            fcntl.flock(fd, fcntl.LOCK_UN)
            self._close()
            self._quick.release()
            return False
        self._quick_held = True
        return True

    def acquire(self, timeout: float) -> None:
        """Wait for the lock through filelock; raises filelock's `Timeout` after `timeout` seconds."""
        self.file_lock.acquire(timeout=timeout)

    def release(self) -> None:
        """Let go of the lock, taken either way."""
        # Only one holder at a time, whichever way it took the lock: this flag is that holder's.
        if self._quick_held and fcntl is not None and self._fd is not None:
            self._quick_held = False
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            self._quick.release()
        else:
            self.file_lock.release()

    def _descriptor(self) -> int:
        # A process forked from this one shares the descriptor, and with it any hold: it opens its own.
        if self._fd is None or self._fd_pid != os.getpid():
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
            self._fd_pid = os.getpid()
        return self._fd

    def _same_file(self, fd: int) -> bool:
        try:
            held, named = os.fstat(fd), os.stat(self.path)
        except OSError:
            return False
        return (held.st_dev, held.st_ino) == (named.st_dev, named.st_ino)

    def _close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None and self._fd_pid == os.getpid():
            os.close(fd)
