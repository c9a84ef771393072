"""Reading a file whose path came from a document (a policy's keyPath, registries.d, a lookaside URL): a regular
file of bounded size only, so that ``/dev/zero`` cannot fill the memory nor a FIFO hang the reader."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from sealpod.errors import SealpodError


def read_bounded(
    path: Path | str, limit: int, what: str, error: type[SealpodError], *, follow_symlinks: bool = True
) -> bytes:
    """The content of the regular file ``path`` of at most ``limit`` bytes; else ``error`` naming ``what`` and the
    path (a final symlink is refused too when not ``follow_symlinks``). ``FileNotFoundError`` passes through
    (callers treat a missing file their own way)."""
    text = str(path)
    if "\0" in text:
        raise error(f"{what}: the path {text!r} holds a NUL byte")
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC | (0 if follow_symlinks else os.O_NOFOLLOW)
    try:
        fd = os.open(text, flags)
    except FileNotFoundError:
        raise
    except OSError as err:
        raise error(f"{what}: cannot read {text}: {err.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{what}: {text} is not a regular file")
        if st.st_size > limit:
            raise error(f"{what}: {text} is {st.st_size} bytes, over the {limit}-byte bound")
        chunks, total = [], 0
        while chunk := os.read(fd, min(1 << 20, limit + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise error(f"{what}: {text} grew over the {limit}-byte bound while it was read")
        return b"".join(chunks)
    except OSError as err:
        raise error(f"{what}: cannot read {text}: {err.strerror}") from None
    finally:
        os.close(fd)
