"""Pulling from OCI layouts: integrity checks before commit, target handling, ownership and devices."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from sealpod.errors import DigestMismatchError, ManifestError, UnpackError
from sealpod.oci import mediatypes as mt
from sealpod.oci.layout import OciLayout
from sealpod.oci.platform import parse_platform
from sealpod.oci.pull import pull
from sealpod.oci.source import LayoutStore
from sealpod.oci.unpack import UnpackOptions
from tests.conftest import snapshot
from tests.helpers import E, compress, image_from_tars, make_tar

AMD64 = parse_platform("linux/amd64")
TAR = make_tar([E("a", "dir"), E("a/file", data=b"content\n" * 100)])


def _rewrite(layout_dir: Path, tag: str, edit_manifest=None, edit_config=None) -> None:  # type: ignore[no-untyped-def]
    """Rewrite an image's manifest and/or config in place (giving new, consistent digests for the documents)."""
    layout = OciLayout(layout_dir)
    manifest = json.loads(layout.get_manifest(tag).raw)
    if edit_config:
        config = json.loads(layout.blob_path(manifest["config"]["digest"]).read_bytes())
        edit_config(config)
        manifest["config"] = layout.put_bytes(json.dumps(config).encode(), mt.OCI_CONFIG).to_json_dict()
    if edit_manifest:
        edit_manifest(manifest)
    layout.tag(layout.put_bytes(json.dumps(manifest).encode(), mt.OCI_MANIFEST), tag)


def _pull_refused(tmp_path: Path, error: type[Exception], match: str) -> None:
    before = snapshot(tmp_path)
    with pytest.raises(error, match=match):
        pull(LayoutStore(str(tmp_path / "layout"), "t"), tmp_path / "rootfs", AMD64)
    assert snapshot(tmp_path) == before


def test_blob_longer_than_its_descriptor_is_refused(tmp_path: Path) -> None:
    image_from_tars(tmp_path / "layout", "t", [TAR])
    _rewrite(tmp_path / "layout", "t", edit_manifest=lambda m: m["layers"][0].update(size=m["layers"][0]["size"] - 5))
    _pull_refused(tmp_path, DigestMismatchError, "longer than the")


def test_wrong_diff_id_is_refused(tmp_path: Path) -> None:
    image_from_tars(tmp_path / "layout", "t", [TAR])
    _rewrite(tmp_path / "layout", "t", edit_config=lambda c: c["rootfs"].update(diff_ids=["sha256:" + "0" * 64]))
    _pull_refused(tmp_path, DigestMismatchError, "diff_id")


def test_layer_count_mismatch_is_refused(tmp_path: Path) -> None:
    image_from_tars(tmp_path / "layout", "t", [TAR])
    _rewrite(tmp_path / "layout", "t", edit_config=lambda c: c["rootfs"]["diff_ids"].append("sha256:" + "1" * 64))
    _pull_refused(tmp_path, ManifestError, "1 layers but the config 2 diff_ids")


def test_tampered_config_and_manifest_blobs_are_refused(tmp_path: Path) -> None:
    image_from_tars(tmp_path / "layout", "t", [TAR])
    layout = OciLayout(tmp_path / "layout")
    manifest = json.loads(layout.get_manifest("t").raw)
    config_path = layout.blob_path(manifest["config"]["digest"])
    config_path.write_bytes(config_path.read_bytes().replace(b"amd64", b"arm64"))
    _pull_refused(tmp_path, DigestMismatchError, "digest mismatch")
    manifest_path = layout.blob_path(layout.find("t").digest)
    manifest_path.write_bytes(manifest_path.read_bytes() + b" ")
    _pull_refused(tmp_path, DigestMismatchError, "mismatch")


def test_one_byte_changed_in_later_layer_leaves_nothing(tmp_path: Path) -> None:
    """Layer 1 is fine and fully applied in staging; layer 2 is altered: nothing at all is committed."""
    image_from_tars(tmp_path / "layout", "t", [TAR, make_tar([E("b", data=b"x" * 5000)])], compression="none")
    layout = OciLayout(tmp_path / "layout")
    manifest = json.loads(layout.get_manifest("t").raw)
    blob = layout.blob_path(manifest["layers"][1]["digest"])
    data = bytearray(blob.read_bytes())
    data[1000] ^= 0xFF
    blob.write_bytes(bytes(data))
    _pull_refused(tmp_path, DigestMismatchError, "digest mismatch")


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_concatenated_streams_and_compressions(compression: str, tmp_path: Path) -> None:
    image_from_tars(tmp_path / "layout", "t", [TAR], compression=compression)
    pull(LayoutStore(str(tmp_path / "layout"), "t"), tmp_path / "rootfs", AMD64)
    assert (tmp_path / "rootfs/a/file").read_bytes() == b"content\n" * 100


def test_multi_member_gzip_layer(tmp_path: Path) -> None:
    """A gzip blob made of two members (as pigz or concatenation produce) is one stream."""
    layout = OciLayout(tmp_path / "layout")
    image_from_tars(tmp_path / "layout", "t", [TAR])
    half = len(TAR) // 2
    blob = compress(TAR[:half])[0] + compress(TAR[half:])[0]
    desc = layout.put_bytes(blob, mt.OCI_LAYER_GZIP).to_json_dict()
    _rewrite(tmp_path / "layout", "t", edit_manifest=lambda m: m.update(layers=[desc]))
    pull(LayoutStore(str(tmp_path / "layout"), "t"), tmp_path / "rootfs", AMD64)
    assert (tmp_path / "rootfs/a/file").read_bytes() == b"content\n" * 100


def test_target_must_be_new_or_empty(tmp_path: Path) -> None:
    image_from_tars(tmp_path / "layout", "t", [TAR])
    (tmp_path / "rootfs").mkdir()
    (tmp_path / "rootfs" / "precious").write_text("mine")
    with pytest.raises(UnpackError, match="not empty"):
        pull(LayoutStore(str(tmp_path / "layout"), "t"), tmp_path / "rootfs", AMD64)
    assert (tmp_path / "rootfs" / "precious").read_text() == "mine"
    (tmp_path / "rootfs" / "precious").unlink()
    pull(LayoutStore(str(tmp_path / "layout"), "t"), tmp_path / "rootfs", AMD64)
    assert (tmp_path / "rootfs/a/file").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="ownership and device nodes need root")
def test_ownership_modes_times_and_allowed_devices(tmp_path: Path) -> None:
    tar = make_tar(
        [
            E("d", "dir", mode=0o750, uid=12, gid=34, mtime=1_600_000_000),
            E("d/f", data=b"x", mode=0o4711, uid=1000, gid=2000, mtime=1_500_000_000),
            E("d/l", "symlink", link="f", uid=5, gid=6),
            E("dev/null", "char", mode=0o666),
        ]
    )
    image_from_tars(tmp_path / "layout", "t", [tar])
    pull(
        LayoutStore(str(tmp_path / "layout"), "t"),
        tmp_path / "rootfs",
        AMD64,
        options=UnpackOptions(allow_devices=True),
    )
    root = tmp_path / "rootfs"
    st = (root / "d").lstat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, int(st.st_mtime)) == (0o750, 12, 34, 1_600_000_000)
    st = (root / "d/f").lstat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, int(st.st_mtime)) == (0o4711, 1000, 2000, 1_500_000_000)
    st = (root / "d/l").lstat()
    assert (st.st_uid, st.st_gid) == (5, 6)
    st = (root / "dev/null").lstat()
    assert stat.S_ISCHR(st.st_mode)
    assert (os.major(st.st_rdev), os.minor(st.st_rdev)) == (1, 3)


def test_layout_with_several_images_needs_a_tag(tmp_path: Path) -> None:
    image_from_tars(tmp_path / "layout", "one", [TAR])
    image_from_tars(tmp_path / "layout", "two", [make_tar([E("two")])])
    with pytest.raises(Exception, match="holds 2 images") as err:
        pull(LayoutStore(str(tmp_path / "layout"), None), tmp_path / "rootfs", AMD64)
    assert "one" in str(getattr(err.value, "hint", ""))
    pull(LayoutStore(str(tmp_path / "layout"), "two"), tmp_path / "rootfs", AMD64)
    assert (tmp_path / "rootfs/two").exists()
