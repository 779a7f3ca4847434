"""The notebook's lock: the quick try on a kept descriptor and filelock's waiting acquire are one lock.

Another process is a real one, holding the lock file through filelock as another nbmcp would.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from filelock import FileLock, Timeout

from nbmcp.notebook.lock import NotebookLock

pytestmark = pytest.mark.skipif(os.name != "posix", reason="the quick try is flock's; elsewhere filelock does all")

#: Another process: holds the lock file given through filelock until its stdin closes.
HOLDER = """
import sys
from filelock import FileLock
with FileLock(sys.argv[1], thread_local=False):
    print("held", flush=True)
    sys.stdin.read()
"""
#: Another process: tries the lock file once and says whether it got it.
TRIER = """
import sys
from filelock import FileLock, Timeout
try:
    with FileLock(sys.argv[1], thread_local=False).acquire(timeout=0.2):
        print("got it")
except Timeout:
    print("held by another")
"""


@contextmanager
def held_elsewhere(path: Path) -> Iterator[None]:
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        try:
            assert proc.stdout.readline().strip() == "held"
            yield
        finally:
            proc.stdin.close()
            proc.wait(timeout=30)


def tried_elsewhere(path: Path) -> str:
    done = subprocess.run([sys.executable, "-c", TRIER, str(path)], capture_output=True, text=True, timeout=60)
    return done.stdout.strip()


def test_the_quick_try_and_another_process_exclude_each_other(tmp_path: Path) -> None:
    path = tmp_path / "n.lock"
    lock = NotebookLock(path, timeout=1)
    with held_elsewhere(path):
        assert not lock.try_acquire()
        with pytest.raises(Timeout):
            lock.acquire(0.1)
    assert lock.try_acquire()
    assert not lock.try_acquire()  # one holder in this process too
    assert tried_elsewhere(path) == "held by another"
    lock.release()
    assert tried_elsewhere(path) == "got it"
    lock.acquire(1)  # the waiting way, then the quick try sees it held
    assert not lock.try_acquire()
    lock.release()
    assert lock.try_acquire()
    lock.release()


def test_a_lock_file_replaced_since_it_was_opened_is_not_trusted(tmp_path: Path) -> None:
    path = tmp_path / "n.lock"
    lock = NotebookLock(path, timeout=1)
    assert lock.try_acquire()
    lock.release()
    path.unlink()  # a cleaner emptied the lock folder: other processes now lock a new file
    with held_elsewhere(path):
        assert not lock.try_acquire()  # the old descriptor's flock would have succeeded
    assert lock.try_acquire()  # on the new file
    assert tried_elsewhere(path) == "held by another"
    lock.release()


def test_a_file_lock_on_the_same_path_in_this_process_is_excluded_too(tmp_path: Path) -> None:
    path = tmp_path / "n.lock"
    lock = NotebookLock(path, timeout=1)
    other = FileLock(path, thread_local=False)
    assert lock.try_acquire()
    with pytest.raises(Timeout):
        other.acquire(timeout=0.1)
    lock.release()
    with other:
        assert not lock.try_acquire()
