"""A strict, bounded, streaming tar reader (ustar, GNU long names, PAX) for image layers.

It reads headers from a :class:`ChunkReader` and leaves each entry's content for the caller to consume with
:meth:`TarStream.copy_content` or to skip. Every size is checked against :class:`TarLimits` before anything is
allocated; anything it does not understand is refused with the entry's name and offset.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field

from sealpod.errors import UnsafeLayerError
from sealpod.oci.chunks import ChunkReader, TruncatedError

BLOCK = 512

REGULAR = "0"
HARDLINK = "1"
SYMLINK = "2"
CHARDEV = "3"
BLOCKDEV = "4"
DIRECTORY = "5"
FIFO = "6"
_CONTIGUOUS = "7"
_PAX = "x"
_PAX_GLOBAL = "g"
_GNU_LONGNAME = "L"
_GNU_LONGLINK = "K"
_META_TYPES = (_PAX, _PAX_GLOBAL, _GNU_LONGNAME, _GNU_LONGLINK)
_ENTRY_TYPES = (REGULAR, HARDLINK, SYMLINK, CHARDEV, BLOCKDEV, DIRECTORY, FIFO)


@dataclass(frozen=True, slots=True)
class TarLimits:
    """Bounds on what a single layer may contain."""

    max_entries: int = 1_000_000
    max_total_bytes: int = 256 * 1024**3
    max_path_bytes: int = 4096
    max_name_bytes: int = 255
    max_meta_bytes: int = 1024 * 1024
    max_xattrs_bytes: int = 256 * 1024

    def bounded(self, max_total_bytes: int | None, max_entries: int | None) -> TarLimits:
        """These limits with the size and entry bounds a user set (None keeps this one's)."""
        return dataclasses.replace(
            self,
            max_total_bytes=self.max_total_bytes if max_total_bytes is None else max_total_bytes,
            max_entries=self.max_entries if max_entries is None else max_entries,
        )


@dataclass(slots=True)
class TarEntry:
    """One tar entry's header, after PAX and GNU extensions are applied."""

    name: str
    type: str
    size: int
    mode: int
    uid: int
    gid: int
    mtime: float
    linkname: str
    devmajor: int
    devminor: int
    offset: int
    xattrs: dict[str, bytes] = field(default_factory=dict)


def _refuse(message: str, offset: int) -> UnsafeLayerError:
    return UnsafeLayerError(f"malformed layer tar at offset {offset}: {message}")


def _number(field_bytes: bytes, what: str, offset: int) -> int:
    if field_bytes and field_bytes[0] & 0x80:
        if field_bytes[0] == 0xFF:
            raise _refuse(f"negative {what}", offset)
        value = field_bytes[0] & 0x7F
        for byte in field_bytes[1:]:
            value = (value << 8) | byte
        return value
    text = field_bytes.split(b"\0", 1)[0].strip(b" ")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise _refuse(f"{what} field {field_bytes!r} is not an octal number", offset) from None


def _string(field_bytes: bytes) -> str:
    return field_bytes.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _checksum_ok(header: bytes) -> bool:
    stored_text = header[148:156].split(b"\0", 1)[0].strip(b" ")
    try:
        stored = int(stored_text, 8)
    except ValueError:
        return False
    blanked = header[:148] + b" " * 8 + header[156:]
    if stored == sum(blanked):
        return True
    return stored == sum(b - 256 if b > 127 else b for b in blanked)


def _parse_pax(data: bytes, offset: int) -> dict[str, bytes]:
    records: dict[str, bytes] = {}
    pos = 0
    while pos < len(data):
        if data[pos] == 0:
            break
        space = data.find(b" ", pos, pos + 20)
        if space < 0:
            raise _refuse("PAX record without a length", offset)
        try:
            length = int(data[pos:space])
        except ValueError:
            raise _refuse("PAX record length is not a number", offset) from None
        if length <= space - pos + 1 or pos + length > len(data) or data[pos + length - 1] != 0x0A:
            raise _refuse("PAX record length is out of bounds", offset)
        key, eq, value = data[space + 1 : pos + length - 1].partition(b"=")
        if not eq or not key:
            raise _refuse("PAX record without 'key='", offset)
        records[key.decode("utf-8", "surrogateescape")] = value
        pos += length
    return records


class TarStream:
    """Iterates the entries of a tar stream; the caller must consume or skip each entry's content."""

    def __init__(self, reader: ChunkReader, limits: TarLimits | None = None) -> None:
        self.reader = reader
        self.limits = limits or TarLimits()
        self.entries = 0
        self.total_bytes = 0
        self._pending = 0

    def _read_meta(self, size: int, offset: int, what: str) -> bytes:
        if size > self.limits.max_meta_bytes:
            raise _refuse(f"{what} of {size} bytes exceeds the {self.limits.max_meta_bytes}-byte bound", offset)
        data = self.reader.read_exact(size)
        self.reader.skip(-size % BLOCK)
        return data

    def _header(self) -> bytes | None:
        """The next header block, or None at the end of the archive."""
        try:
            block = self.reader.read_block_or_eof(BLOCK)
        except TruncatedError:
            raise _refuse("the stream ends inside a header", self.reader.position) from None
        if block is None or block == bytes(BLOCK):  # a clean end without the marker is accepted, as Go's tar does
            return None
        return block

    def __iter__(self) -> Iterator[TarEntry]:
        try:
            yield from self._entries()
        except TruncatedError as err:
            raise _refuse(f"truncated: {err}", self.reader.position) from None

    def _entries(self) -> Iterator[TarEntry]:
        pax: dict[str, bytes] = {}
        long_name: str | None = None
        long_link: str | None = None
        while True:
            if self._pending:
                self.reader.skip(self._pending)
                self._pending = 0
            offset = self.reader.position
            header = self._header()
            if header is None:
                return
            if not _checksum_ok(header):
                raise _refuse("header checksum mismatch (not a tar stream, or corrupted)", offset)
            typeflag = chr(header[156]) if header[156] else REGULAR
            size = _number(header[124:136], "size", offset)
            if typeflag in _META_TYPES:
                data = self._read_meta(size, offset, "extended header")
                if typeflag == _PAX:
                    pax.update(_parse_pax(data, offset))
                elif typeflag == _PAX_GLOBAL:
                    # ignored, as Go's archive/tar, containerd and containers/storage ignore it (umoci refuses the
                    # layer): applied, it would make the tree sealpod runs differ from the one a scanner sees
                    _parse_pax(data, offset)
                elif typeflag == _GNU_LONGNAME:
                    long_name = _string(data)
                else:
                    long_link = _string(data)
                continue
            entry = self._entry(header, typeflag, size, offset, pax, long_name, long_link)
            pax, long_name, long_link = {}, None, None
            self.entries += 1
            if self.entries > self.limits.max_entries:
                raise UnsafeLayerError(f"layer has more than {self.limits.max_entries} entries")
            self.total_bytes += entry.size
            if self.total_bytes > self.limits.max_total_bytes:
                raise UnsafeLayerError(
                    f"layer content exceeds the {self.limits.max_total_bytes}-byte bound at {entry.name!r}"
                )
            self._pending = entry.size + (-entry.size % BLOCK)
            yield entry

    def _entry(
        self,
        header: bytes,
        typeflag: str,
        size: int,
        offset: int,
        pax: dict[str, bytes],
        long_name: str | None,
        long_link: str | None,
    ) -> TarEntry:
        if typeflag == _CONTIGUOUS:
            typeflag = REGULAR
        if typeflag not in _ENTRY_TYPES:
            kind = {"S": "GNU sparse file", "V": "volume label", "M": "multi-volume continuation"}.get(typeflag)
            raise _refuse(f"unsupported entry type {kind or repr(typeflag)}", offset)
        if any(key.startswith("GNU.sparse.") for key in pax):
            raise _refuse("sparse files (PAX GNU.sparse) are not supported in image layers", offset)
        magic = header[257:263]
        name = _string(header[0:100])
        if magic == b"ustar\0" and header[345]:
            name = _string(header[345:500]) + "/" + name
        name = long_name if long_name is not None else name
        linkname = long_link if long_link is not None else _string(header[157:257])
        decoded = {k: v.decode("utf-8", "surrogateescape") for k, v in pax.items() if not k.startswith("SCHILY.")}
        name = decoded.get("path", name)
        linkname = decoded.get("linkpath", linkname)
        try:
            size = int(decoded.get("size", size))
            uid = int(decoded.get("uid", _number(header[108:116], "uid", offset)))
            gid = int(decoded.get("gid", _number(header[116:124], "gid", offset)))
            mtime = float(decoded.get("mtime", _number(header[136:148], "mtime", offset)))
        except ValueError as err:
            raise _refuse(f"bad numeric PAX record: {err}", offset) from None
        if size < 0 or uid < 0 or gid < 0:
            raise _refuse(f"negative size or id in {name!r}", offset)
        if size and typeflag not in (REGULAR, HARDLINK):
            raise _refuse(f"{name!r} of type {typeflag!r} carries {size} bytes of content", offset)
        self._check_name(name, offset, "name")
        if typeflag in (HARDLINK, SYMLINK):
            if not linkname:
                raise _refuse(f"link {name!r} has an empty target", offset)
            self._check_name(linkname, offset, "link target")
        xattrs: dict[str, bytes] = {}
        xattr_bytes = 0
        for key, value in pax.items():
            if key.startswith("SCHILY.xattr."):
                xattrs[key[len("SCHILY.xattr.") :]] = value
            elif key.startswith("LIBARCHIVE.xattr."):
                try:
                    xattrs[key[len("LIBARCHIVE.xattr.") :]] = base64.b64decode(value, validate=False)
                except ValueError:
                    raise _refuse(f"bad base64 in {key}", offset) from None
            else:
                continue
            xattr_bytes += len(key) + len(value)
        if xattr_bytes > self.limits.max_xattrs_bytes:
            raise _refuse(f"{name!r} carries more than {self.limits.max_xattrs_bytes} bytes of xattrs", offset)
        return TarEntry(
            name=name,
            type=typeflag,
            size=size,
            mode=_number(header[100:108], "mode", offset) & 0o7777,
            uid=uid,
            gid=gid,
            mtime=mtime,
            linkname=linkname,
            devmajor=_number(header[329:337], "devmajor", offset) if typeflag in (CHARDEV, BLOCKDEV) else 0,
            devminor=_number(header[337:345], "devminor", offset) if typeflag in (CHARDEV, BLOCKDEV) else 0,
            offset=offset,
            xattrs=xattrs,
        )

    def _check_name(self, name: str, offset: int, what: str) -> None:
        if not name:
            raise _refuse(f"entry with an empty {what}", offset)
        if "\0" in name:
            raise _refuse(f"{what} {name!r} contains a NUL byte", offset)
        encoded = name.encode("utf-8", "surrogateescape")
        if len(encoded) > self.limits.max_path_bytes:
            raise _refuse(f"{what} is {len(encoded)} bytes, over the {self.limits.max_path_bytes}-byte bound", offset)
        longest = max(len(part) for part in encoded.split(b"/"))
        if longest > self.limits.max_name_bytes:
            raise _refuse(
                f"{what} {name[:60]!r}... has a component over the {self.limits.max_name_bytes}-byte bound", offset
            )

    def copy_content(self, entry: TarEntry, fd: int) -> None:
        """Write the current entry's content to ``fd``."""
        try:
            self.reader.copy_to_fd(fd, entry.size)
        except TruncatedError as err:
            raise _refuse(f"content of {entry.name!r} is truncated: {err}", entry.offset) from None
        self._pending = -entry.size % BLOCK
