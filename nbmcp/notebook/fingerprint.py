"""What the store last saw of the file (`Fingerprint`), and when a stat alone can be trusted.

A stat equal to the one we remember proves the file unchanged only once the tick of its mtime is
over: a save within the same tick may keep mtime, size and even the inode (git's "racily clean"
rule; issue 13). Until then the bytes are compared.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["COARSE_RACY_WINDOW_NS", "RACY_WINDOW_NS", "Fingerprint"]

#: A file modified this close to the moment we looked at it may change again within the same mtime
#: tick, so its bytes are compared instead of trusting the stat (git's "racily clean" rule). Linux
#: file systems stamp files with the kernel's coarse clock (one tick: 1 to 10 ms); this is well past it.
RACY_WINDOW_NS = 100_000_000
#: The window for a file whose mtime has no sub-second part: a file system with 1 s (HFS+, some network
#: shares) or 2 s (FAT) timestamps, where two saves within the same second or two look alike.
COARSE_RACY_WINDOW_NS = 2_000_000_000


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
