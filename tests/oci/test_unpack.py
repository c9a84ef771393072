"""Layer semantics of RootfsWriter beyond the umoci differential: whiteouts within one layer, replacements,
and a fuzzed tar parser that never crashes with anything but a sealpod error and never writes outside."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealpod.errors import SealpodError
from sealpod.oci.chunks import ChunkReader
from sealpod.oci.tarstream import TarStream
from sealpod.oci.unpack import RootfsWriter
from tests.helpers import E, make_tar


def _apply(root: Path, *layers: list[E]) -> RootfsWriter:
    writer = RootfsWriter(str(root))
    for layer in layers:
        writer.apply(ChunkReader(iter([make_tar(layer)])))
    writer.finish()
    return writer


def test_whiteout_only_hides_lower_layers(tmp_path: Path) -> None:
    _apply(
        tmp_path,
        [E("a", data=b"lower"), E("d", "dir"), E("d/old", data=b"o")],
        [E("b", data=b"same layer"), E(".wh.b"), E(".wh.a"), E("d/new", data=b"n"), E("d/.wh..wh..opq")],
    )
    assert not (tmp_path / "a").exists()
    assert (tmp_path / "b").read_bytes() == b"same layer"
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["new"]


def test_opaque_whiteout_hides_lower_content_of_upper_subdirectories(tmp_path: Path) -> None:
    _apply(
        tmp_path, [E("d/sub/old", data=b"o"), E("d/keep", data=b"k")], [E("d/.wh..wh..opq"), E("d/sub/new", data=b"n")]
    )
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == ["d", "d/sub", "d/sub/new"]


def test_replacements_between_types(tmp_path: Path) -> None:
    _apply(
        tmp_path,
        [E("x", "dir"), E("x/child", data=b"c"), E("y", data=b"file"), E("z", "symlink", link="y")],
        [E("x", data=b"now a file"), E("y", "dir"), E("z", data=b"no longer a link")],
    )
    assert (tmp_path / "x").read_bytes() == b"now a file"
    assert (tmp_path / "y").is_dir()
    assert not (tmp_path / "z").is_symlink()
    assert (tmp_path / "z").read_bytes() == b"no longer a link"


def test_dir_modes_apply_after_children(tmp_path: Path) -> None:
    _apply(tmp_path, [E("ro", "dir", mode=0o555), E("ro/f", data=b"x")], [E("ro/g", data=b"y")])
    assert (tmp_path / "ro/g").read_bytes() == b"y"
    assert (tmp_path / "ro").stat().st_mode & 0o777 == 0o555


def test_hardlink_to_file_from_lower_layer(tmp_path: Path) -> None:
    _apply(tmp_path, [E("bin/busybox", data=b"\x7fELF", mode=0o755)], [E("bin/sh", "hardlink", link="bin/busybox")])
    assert (tmp_path / "bin/sh").stat().st_ino == (tmp_path / "bin/busybox").stat().st_ino


def test_tar_parser_reads_long_names_and_pax() -> None:
    long = "d/" + "n" * 150 + "/file"
    tar = make_tar([E(long, data=b"x", pax={"SCHILY.xattr.user.k": "v"})])
    entries = list(TarStream(ChunkReader(iter([tar]))))
    assert entries[0].name == long
    assert entries[0].xattrs == {"user.k": b"v"}
    import tarfile

    gnu = io.BytesIO()
    with tarfile.open(fileobj=gnu, mode="w", format=tarfile.GNU_FORMAT) as archive:
        info = tarfile.TarInfo(long)
        info.type = tarfile.SYMTYPE
        info.linkname = "t" * 200
        archive.addfile(info)
    parsed = list(TarStream(ChunkReader(iter([gnu.getvalue()]))))
    assert (parsed[0].name, parsed[0].linkname) == (long, "t" * 200)


_BASE = make_tar(
    [
        E("etc", "dir"),
        E("etc/passwd", data=b"root:x:0:0\n"),
        E("l", "symlink", link="/etc"),
        E("h", "hardlink", link="etc/passwd"),
        E("big", data=b"z" * 3000),
        E("etc/.wh.passwd"),
    ]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(st.tuples(st.integers(0, len(_BASE) - 1), st.integers(0, 255)), min_size=1, max_size=8),
    st.integers(1, 700),
)
def test_fuzzed_tars_fail_cleanly_and_stay_inside(
    tmp_path_factory: pytest.TempPathFactory, flips: list[tuple[int, int]], chunk: int
) -> None:
    base = tmp_path_factory.mktemp("fuzz")
    root = base / "root"
    root.mkdir()
    data = bytearray(_BASE)
    for offset, value in flips:
        data[offset] = value
    chunks = iter([bytes(data[i : i + chunk]) for i in range(0, len(data), chunk)])
    with contextlib.suppress(SealpodError):
        RootfsWriter(str(root)).apply(ChunkReader(chunks))
    assert sorted(p.name for p in base.iterdir()) == ["root"]
