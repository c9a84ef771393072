"""Malicious and malformed layers: each is refused naming the fault, or neutralised inside the rootfs the way umoci
does it; in no case is anything written outside the rootfs, and a refused image leaves no rootfs and no staging."""

from __future__ import annotations

import gzip
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sealpod.errors import SealpodError
from sealpod.oci.platform import parse_platform
from sealpod.oci.pull import pull
from sealpod.oci.source import LayoutStore
from sealpod.oci.tarstream import TarLimits
from sealpod.oci.unpack import UnpackOptions
from tests.conftest import snapshot
from tests.helpers import E, image_from_tars, make_tar

OUTSIDE = "@OUTSIDE@"  # replaced by the absolute path of a directory next to the rootfs, holding a canary file


@dataclass
class Case:
    """Layers (lists of entries, or raw tar bytes), and either an error substring or a check of the result."""

    layers: list[list[E] | bytes]
    refused: str | None = None
    inside: Callable[[Path], bool] | None = None
    limits: TarLimits = field(default_factory=TarLimits)


def _raw_header_tar(mutate: Callable[[bytearray], None], entries: list[E] | None = None) -> bytes:
    data = bytearray(make_tar(entries or [E("file.txt", data=b"x" * 600)], fmt=tarfile.USTAR_FORMAT))
    mutate(data)
    return bytes(data)


def _set_octal(data: bytearray, start: int, length: int, value: bytes) -> None:
    data[start : start + length] = value.ljust(length, b"\0")


def _fix_checksum(data: bytearray) -> None:
    header = data[:512]
    header[148:156] = b" " * 8
    data[148:156] = f"{sum(header):06o}\0 ".encode()


def _negative_size(data: bytearray) -> None:
    data[124:136] = b"\xff" * 12
    _fix_checksum(data)


def _sparse(data: bytearray) -> None:
    data[156:157] = b"S"
    _fix_checksum(data)


def _bad_checksum(data: bytearray) -> None:
    data[0:1] = b"g"


def _truncate(data: bytearray) -> None:
    del data[700:]


def _huge_pax(data: bytearray) -> None:
    data[:] = make_tar([E("x", kind="dir")], fmt=tarfile.USTAR_FORMAT)
    pax = bytearray(data[:512])
    pax[0:100] = b"PaxHeader/x".ljust(100, b"\0")
    pax[156:157] = b"x"
    _set_octal(pax, 124, 12, b"%011o" % (64 * 1024 * 1024))
    _fix_checksum(pax)
    data[:0] = pax


def _exists(rel: str) -> Callable[[Path], bool]:
    return lambda root: (root / rel).exists() or (root / rel).is_symlink()


CASES: dict[str, Case] = {
    "dotdot-file": Case([[E("../../evil", data=b"x")]], inside=_exists("evil")),
    "absolute-file": Case([[E("/abs/evil", data=b"x")]], inside=_exists("abs/evil")),
    "dotdot-in-middle": Case([[E("./a/../../../evil", data=b"x")]], inside=_exists("evil")),
    "symlink-relative-escape-write-through": Case(
        [[E("esc", "symlink", link="../../outside"), E("esc/pwned", data=b"x")]], inside=_exists("outside/pwned")
    ),
    "symlink-root-write-through": Case(
        [[E("esc", "symlink", link="/"), E("esc/etc/pwned", data=b"x")]], inside=_exists("etc/pwned")
    ),
    "symlink-absolute-host-path-write-through": Case(
        [[E("esc", "symlink", link=OUTSIDE), E("esc/pwned", data=b"x")]],
        inside=lambda root: any(root.rglob("pwned")),
    ),
    "symlink-deep-dotdot-write-through": Case(
        [[E("a", "dir"), E("a/b", "symlink", link="../../../../../../outside"), E("a/b/pwned", data=b"x")]],
        inside=_exists("outside/pwned"),
    ),
    "hardlink-dotdot-outside": Case([[E("hl", "hardlink", link="../outside/canary")]], refused="does not exist"),
    "hardlink-absolute-host-path": Case([[E("hl", "hardlink", link=OUTSIDE + "/canary")]], refused="does not exist"),
    "hardlink-through-symlinked-dir": Case(
        [[E("d", "symlink", link=OUTSIDE), E("hl", "hardlink", link="d/canary")]], refused="does not exist"
    ),
    "hardlink-to-directory": Case([[E("d", "dir"), E("hl", "hardlink", link="d")]], refused="directory"),
    "dir-swapped-for-symlink-same-layer": Case(
        [[E("a", "dir"), E("a/x", data=b"1"), E("a", "symlink", link=OUTSIDE), E("a/pwned", data=b"x")]],
        inside=lambda root: (root / "a").is_symlink() and any(root.rglob("pwned")),
    ),
    "dir-swapped-for-symlink-across-layers": Case(
        [[E("a", "dir")], [E("a", "symlink", link=OUTSIDE)], [E("a/pwned", data=b"x")]],
        inside=lambda root: any(root.rglob("pwned")),
    ),
    "final-symlink-replaced-not-followed": Case(
        [[E("f", "symlink", link=OUTSIDE + "/canary")], [E("f", data=b"overwrite")]],
        inside=lambda root: (root / "f").read_bytes() == b"overwrite" and not (root / "f").is_symlink(),
    ),
    "symlink-loop": Case(
        [[E("l1", "symlink", link="l2"), E("l2", "symlink", link="l1"), E("l1/x")]], refused="symbolic links"
    ),
    "file-as-parent": Case([[E("p", data=b"1"), E("p/x", data=b"2")]], refused="is not a directory"),
    "whiteout-of-dot": Case([[E("a", "dir"), E("a/.wh..")]], refused="names no file"),
    "whiteout-of-dotdot": Case([[E("a", "dir"), E("a/.wh...")]], refused="names no file"),
    "whiteout-through-symlink": Case([[E("s", "symlink", link=OUTSIDE)], [E("s/.wh.canary")]], inside=_exists("s")),
    "opaque-through-symlink": Case([[E("s", "symlink", link=OUTSIDE)], [E("s/.wh..wh..opq")]], inside=_exists("s")),
    "device-node-not-allowed": Case(
        [[E("dev/evil", "char"), E("ok", data=b"1")]], inside=lambda root: not (root / "dev/evil").exists()
    ),
    "path-too-long": Case([[E("x", pax={"path": "a/" * 2100 + "f"})]], refused="bound"),
    "component-too-long": Case([[E("a" * 300, data=b"x")]], refused="component over"),
    "too-many-entries": Case(
        [[E(f"f{i}") for i in range(11)]], refused="more than 10 entries", limits=TarLimits(max_entries=10)
    ),
    "too-many-bytes": Case(
        [[E("big", data=b"\0" * 5000)]],
        refused="4096-byte bound",
        limits=TarLimits(max_total_bytes=4096),
    ),
    "bad-checksum": Case([_raw_header_tar(_bad_checksum)], refused="checksum"),
    "truncated-content": Case([_raw_header_tar(_truncate)], refused="truncated"),
    "negative-size": Case([_raw_header_tar(_negative_size)], refused="negative size"),
    "gnu-sparse": Case([_raw_header_tar(_sparse)], refused="sparse"),
    "pax-sparse": Case([[E("s", data=b"x", pax={"GNU.sparse.major": "1", "GNU.sparse.minor": "0"})]], refused="sparse"),
    "huge-pax-header": Case([_raw_header_tar(_huge_pax)], refused="extended header"),
    "nul-in-pax-path": Case([[E("x", pax={"path": "a\0b"})]], refused="NUL"),
    "bad-xattr-namespace": Case([[E("x", data=b"1", pax={"SCHILY.xattr.evil.ns": "1"})]], refused="xattr"),
    "rootfs-itself-as-file": Case([[E("./", data=b"x")]], refused="rootfs itself"),
    "not-a-tar": Case([b"this is not a tar archive at all" * 40], refused="checksum"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_malicious_layer(name: str, tmp_path: Path) -> None:
    case = CASES[name]
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "canary").write_text("host file")
    layers = []
    for layer in case.layers:
        if isinstance(layer, bytes):
            layers.append(layer)
            continue
        for entry in layer:
            entry.name = entry.name.replace(OUTSIDE, str(outside))
            entry.link = entry.link.replace(OUTSIDE, str(outside))
        layers.append(make_tar(layer))
    image_from_tars(tmp_path / "layout", "bad", layers)
    before = snapshot(tmp_path)
    rootfs = tmp_path / "rootfs"
    store = LayoutStore(str(tmp_path / "layout"), "bad")
    options = UnpackOptions(limits=case.limits)
    if case.refused is not None:
        with pytest.raises(SealpodError, match=case.refused):
            pull(store, rootfs, parse_platform("linux/amd64"), options=options)
        assert snapshot(tmp_path) == before, "a refused layer must leave nothing behind"
        return
    pull(store, rootfs, parse_platform("linux/amd64"), options=options)
    after = {k: v for k, v in snapshot(tmp_path).items() if k != "rootfs" and not k.startswith("rootfs/")}
    assert after == before, "nothing outside the rootfs may change"
    assert case.inside is not None
    assert case.inside(rootfs)


def test_decompression_bomb_is_bounded(tmp_path: Path) -> None:
    """A small gzip layer that inflates far past the bound is refused without inflating it all."""
    tar = make_tar([E("zeros", data=b"\0" * (64 * 1024 * 1024))])
    blob = gzip.compress(tar, compresslevel=9)
    assert len(blob) < 200_000
    image_from_tars(tmp_path / "layout", "bomb", [tar])
    with pytest.raises(SealpodError, match="bound"):
        pull(
            LayoutStore(str(tmp_path / "layout"), "bomb"),
            tmp_path / "rootfs",
            parse_platform("linux/amd64"),
            options=UnpackOptions(limits=TarLimits(max_total_bytes=1024 * 1024)),
        )
    assert not (tmp_path / "rootfs").exists()


def test_at_least_25_cases() -> None:
    assert len(CASES) >= 25
