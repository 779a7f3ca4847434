"""A file's bytes held as slices of a few buffers: written and compared without ever being joined.

An edit of one cell of a 15 MB notebook writes a file that is almost all the last file's bytes.
Joining them into one new buffer copies the whole file, and a buffer that large is a fresh memory
map whose pages the kernel must fault in and zero on every write: together several times the cost
of the write itself (issue 14). `Chunks` keeps the slices instead; the file is written slice by slice
and compared with what is on disk block by block, through one small reusable buffer.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import BinaryIO

__all__ = ["BLOCK", "Chunks"]

#: Bytes read at a time when comparing with a file (below glibc's 1 MB map threshold: the buffer is reused).
BLOCK = 1 << 19

#: One slice: (buffer, start, stop).
Part = tuple[bytes, int, int]


class Chunks:
    """Immutable bytes made of slices `(buffer, start, stop)` of `bytes` objects, in order."""

    __slots__ = ("parts", "size")

    def __init__(self, parts: Iterable[Part]) -> None:
        self.parts = [p for p in parts if p[2] > p[1]]
        self.size = sum(stop - start for _, start, stop in self.parts)

    @classmethod
    def of(cls, data: bytes) -> Chunks:
        return cls([(data, 0, len(data))])

    def __len__(self) -> int:
        return self.size

    def tobytes(self) -> bytes:
        if len(self.parts) == 1:
            buf, start, stop = self.parts[0]
            if start == 0 and stop == len(buf):
                return buf
        return b"".join(memoryview(buf)[start:stop] for buf, start, stop in self.parts)

    def write_to(self, f: BinaryIO) -> None:
        """Write every slice to `f` (buffered: small slices are gathered, large ones written directly)."""
        for buf, start, stop in self.parts:
            f.write(memoryview(buf)[start:stop])

    def same_as(self, data: bytes) -> bool:
        """Whether `data` holds exactly these bytes (compared with memcmp, nothing copied)."""
        if len(data) != self.size:
            return False
        offset = 0
        for buf, start, stop in self.parts:
            if not data.startswith(memoryview(buf)[start:stop], offset):
                return False
            offset += stop - start
        return True

    def same_as_file(self, fd: int) -> bool:
        """Whether the file open at `fd` (read from its current position) holds exactly these bytes."""
        if self.size < BLOCK:
            # A small file: one read of it all (and one byte more, to see that it ends there).
            return self.same_as(os.read(fd, self.size + 1))
        block = bytearray(BLOCK)
        view = memoryview(block)
        for buf, start, stop in self.parts:
            while start < stop:
                got = os.readv(fd, [view[: min(BLOCK, stop - start)]])
                # buf.startswith(block[:got], start): buf[start:start + got] == block[:got], by memcmp.
                if not got or not buf.startswith(view[:got], start):
                    return False
                start += got
        return not os.read(fd, 1)  # and nothing after them
