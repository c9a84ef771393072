"""A byte reader over an iterator of chunks, with exact reads, skips and zero-copy writes to a file descriptor."""

from __future__ import annotations

import os
from collections.abc import Iterator

#: The smallest run of zeros written as a hole.
SPARSE_MIN = 64 * 1024


def _all_zero(view: memoryview) -> bool:
    """Whether ``view`` holds only zeros: a sample of every 4,096th byte first, so that data costs almost nothing."""
    sample = view[::4096].tobytes()
    if sample.count(0) != len(sample):
        return False
    return view.tobytes() == bytes(len(view))


class TruncatedError(EOFError):
    """The stream ended before the bytes that were asked for."""


class ChunkReader:
    """Reads exact byte counts from an iterator of ``bytes`` chunks without joining them first."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._view = memoryview(b"")
        self.position = 0

    def _fill(self) -> bool:
        for chunk in self._chunks:
            if chunk:
                self._view = memoryview(chunk)
                return True
        return False

    def read_exact(self, count: int) -> bytes:
        """Exactly ``count`` bytes; :class:`TruncatedError` if the stream ends first."""
        if len(self._view) >= count:
            out = bytes(self._view[:count])
            self._view = self._view[count:]
            self.position += count
            return out
        parts = []
        need = count
        while need:
            if not self._view and not self._fill():
                raise TruncatedError(f"stream ended {need} bytes short at offset {self.position + count - need}")
            take = self._view[:need]
            parts.append(bytes(take))
            self._view = self._view[len(take) :]
            need -= len(take)
        self.position += count
        return b"".join(parts)

    def read_block_or_eof(self, size: int) -> bytes | None:
        """A block of ``size`` bytes, or None at a clean end of stream (no byte of the block present)."""
        if not self._view and not self._fill():
            return None
        return self.read_exact(size)

    def copy_to_fd(self, fd: int, count: int) -> None:
        """Write the next ``count`` bytes to ``fd`` (a new file, at offset 0); a chunk of at least
        :data:`SPARSE_MIN` zeros becomes a hole (a seek), so that a layer of zeros does not fill the disk."""
        need = count
        hole = False
        while need:
            if not self._view and not self._fill():
                raise TruncatedError(f"stream ended {need} bytes short at offset {self.position + count - need}")
            take = self._view[:need]
            if len(take) >= SPARSE_MIN and _all_zero(take):
                os.lseek(fd, len(take), os.SEEK_CUR)
                hole = True
            else:
                written = 0
                while written < len(take):
                    written += os.write(fd, take[written:])
                hole = False
            self._view = self._view[len(take) :]
            need -= len(take)
        if hole:  # the file ends in a hole: its size is where the last seek left it
            os.ftruncate(fd, os.lseek(fd, 0, os.SEEK_CUR))
        self.position += count

    def skip(self, count: int) -> None:
        """Discard the next ``count`` bytes."""
        need = count
        while need:
            if not self._view and not self._fill():
                raise TruncatedError(f"stream ended {need} bytes short at offset {self.position + count - need}")
            take = min(need, len(self._view))
            self._view = self._view[take:]
            need -= take
        self.position += count

    def drain(self) -> int:
        """Read to the end of the stream; return how many bytes were left."""
        left = len(self._view)
        self._view = memoryview(b"")
        for chunk in self._chunks:
            left += len(chunk)
        self.position += left
        return left
