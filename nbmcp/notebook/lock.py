"""The notebook's lock between processes: `flock(2)` on a file in nbmcp's lock folder.

Every nbmcp process on a notebook takes it around each edit (see `store`), and so may any other
program: `flock(1)` or `filelock.FileLock` on the same file exclude nbmcp and are excluded by it
(all of them lock the whole file with flock). The file stays open between edits, so taking the lock
is one `flock` and one `fstat`, where opening, locking, checking and closing it through filelock
each time cost about 0.1 ms of every edit (issue 23). Where flock cannot be used (some network file
systems, a lock file this user may not write) the lock is filelock's, which knows those cases.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import threading
import time
import weakref
from pathlib import Path
from typing import Any

__all__ = ["LOCK_POLL", "NotebookLock"]

#: Seconds between attempts while another process holds the lock.
LOCK_POLL = 0.005

logger = logging.getLogger(__name__)

#: flock's answers when another open file holds the lock (EACCES on some file systems).
_BUSY = frozenset({errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES})

#: Every lock of this process, to be reset in a forked child.
_all: weakref.WeakSet[NotebookLock] = weakref.WeakSet()


class NotebookLock:
    """One notebook's lock file, held by at most one thread of this process at a time (reentrant)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._threads = threading.RLock()  # flock excludes other open files only: this excludes our threads
        self._fd = -1
        self._depth = 0
        self._fallback: Any = None  # a filelock.FileLock, where flock cannot be used
        _all.add(self)

    def acquire(self, timeout: float) -> bool:
        """Take the lock, waiting at most `timeout` seconds; False (nothing held) if it was not had by then."""
        deadline = time.monotonic() + timeout
        if not self._threads.acquire(timeout=max(timeout, 0)):
            return False
        try:
            if self._depth == 0 and not self._take(deadline):
                self._threads.release()
                return False
        except BaseException:
            self._threads.release()
            raise
        self._depth += 1
        return True

    def release(self) -> None:
        """Give the lock back (the file stays, so that every waiter locks the same one)."""
        self._depth -= 1
        try:
            if self._depth == 0:
                if self._fallback is not None:
                    self._fallback.release()
                else:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()

    def _take(self, deadline: float) -> bool:
        while self._fallback is None:
            try:
                fd = self._open()
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in _BUSY or self._fd < 0:
                    self._use_filelock(exc)
                    continue
                if time.monotonic() >= deadline:
                    return False
                time.sleep(LOCK_POLL)
                continue
            if os.fstat(fd).st_nlink:
                return True
            # The file was deleted since it was opened (its folder cleaned up): a lock on it excludes
            # no one, so lock the file now at that name instead.
            self._close()
        from filelock import Timeout

        try:
            self._fallback.acquire(timeout=max(deadline - time.monotonic(), 0))
        except Timeout:
            return False
        return True

    def _open(self) -> int:
        if self._fd < 0:
            flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
            try:
                self._fd = os.open(self.path, flags, 0o644)
            except FileNotFoundError:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(self.path, flags, 0o644)
        return self._fd

    def _close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)

    def _use_filelock(self, why: OSError) -> None:
        """From now on, lock through filelock (flock failed here for another reason than a holder)."""
        from filelock import FileLock

        self._close()
        self._fallback = FileLock(self.path, thread_local=False)
        logger.info("locking %s through filelock: %s", self.path, why)

    def _forget_after_fork(self) -> None:
        # The child shares the parent's open file, and so its lock: unlocking it here would unlock the
        # parent's. Closing the child's copy of the descriptor does not; the child opens its own.
        self._close()
        self._threads = threading.RLock()
        self._depth = 0


def _after_fork_in_child() -> None:
    for lock in list(_all):
        lock._forget_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
