"""The atomic save: a temp file beside the notebook, swapped or renamed into its place.

A crash at any instant leaves either the old file or the new one. Where the system can swap two
names in one step (Linux `renameat2`), the replaced file is kept long enough to tell whether it was
the one last checked, so a save by another writer in between is never lost (issue 13).
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .chunks import Chunks
from .fingerprint import Fingerprint

__all__ = ["DISCARD_ON_THREAD_BYTES", "TEMP_MARKER", "WRITE_BUFFER", "file_mode", "write_atomic"]

#: Marks nbmcp's temporary files, so a later start can remove those a killed process left behind.
TEMP_MARKER = ".nbmcp-tmp"
#: The temp file's write buffer: slices smaller than this are gathered into fewer writes.
WRITE_BUFFER = 1 << 18
#: A replaced file from this size up is deleted on a thread of its own, after the save returns.
DISCARD_ON_THREAD_BYTES = 1 << 20


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


def _read_umask() -> int:
    # os.umask can only be read by setting it; do it once, at import, before any thread runs.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()
