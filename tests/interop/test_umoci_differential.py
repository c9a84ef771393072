"""Differential: the same images unpacked by umoci and by sealpod give identical trees.

The images go through a real docker-registry (pushed by skopeo); sealpod pulls from the registry, umoci unpacks
what skopeo copied back out of it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sealpod.oci.localregistry import LocalRegistry
from sealpod.oci.platform import parse_platform
from sealpod.oci.pull import pull
from sealpod.oci.reference import parse_reference
from sealpod.oci.source import RegistryOptions, RegistryStore
from tests.conftest import need, run_tool, snapshot
from tests.helpers import E, image_from_tars, make_tar

pytestmark = pytest.mark.interop

LAYERS = [
    [
        E("etc", "dir"),
        E("etc/config", data=b"v1\n"),
        E("etc/keep", data=b"kept\n", mode=0o600, uid=1000, gid=1000),
        E("bin", "dir"),
        E("bin/tool", data=b"#!/bin/sh\necho tool\n", mode=0o755),
        E("bin/tool-hardlink", "hardlink", link="bin/tool"),
        E("bin/tool-symlink", "symlink", link="tool"),
        E("lib", "symlink", link="/usr/lib"),
        E("usr/lib", "dir"),
        E("usr/lib/libx.so.1", data=b"\x7fELF..."),
        E("opaque", "dir"),
        E("opaque/lower-a", data=b"a"),
        E("opaque/sub", "dir"),
        E("opaque/sub/lower-b", data=b"b"),
        E("gone", "dir"),
        E("gone/deep", data=b"deep"),
        E("recreated", data=b"old file\n"),
        E("setuid", data=b"s", mode=0o4755),
        E("sticky", "dir", mode=0o1777),
        E("fifo", "fifo"),
        E("xattr-file", data=b"x", pax={"SCHILY.xattr.user.comment": "hello"}),
    ],
    [
        E("etc/.wh.config"),
        E("opaque/.wh..wh..opq"),
        E("opaque/upper", data=b"upper"),
        E(".wh.gone"),
        E(".wh.recreated"),
        E("recreated", "dir"),
        E("recreated/now-a-dir", data=b"new\n"),
        E("bin/tool", data=b"#!/bin/sh\necho tool v2\n", mode=0o700),
        E("usr/lib/libx.so.1", "symlink", link="libx.so.1.2"),
        E("usr/lib/libx.so.1.2", data=b"\x7fELF v2"),
    ],
    [
        E("etc/config", data=b"v3 recreated after the whiteout\n"),
        E("opaque/sub/again", data=b"again"),
        E("usr/share/doc/readme", data=b"docs\n"),
        E("usr/share/doc/readme-link", "hardlink", link="usr/share/doc/readme"),
        E("bin/.wh.tool-symlink"),
    ],
]


@pytest.fixture(scope="module")
def umoci_tree(registry: LocalRegistry, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[object, ...]]:
    """umoci's unpacking of the gzip image, after a round trip through the registry with skopeo."""
    skopeo, umoci = need("skopeo"), need("umoci")
    base = tmp_path_factory.mktemp("umoci")
    image_from_tars(base / "built", "diff", [make_tar(layer) for layer in LAYERS], compression="gzip")
    ref = f"{registry.host}/differential/umoci:v1"
    run_tool(skopeo, "copy", "--dest-tls-verify=false", f"oci:{base / 'built'}:diff", f"docker://{ref}")
    run_tool(skopeo, "copy", "--src-tls-verify=false", f"docker://{ref}", f"oci:{base / 'fetched'}:diff")
    run_tool(umoci, "unpack", "--image", f"{base / 'fetched'}:diff", base / "bundle")
    assert os.getxattr(base / "bundle/rootfs/xattr-file", "user.comment") == b"hello"
    return snapshot(base / "bundle" / "rootfs")


@pytest.mark.parametrize(
    ("compression", "manifest_format"),
    [("gzip", "oci"), ("gzip", "v2s2"), ("zstd", "oci"), ("none", "oci")],
)
def test_sealpod_unpacks_what_umoci_unpacks(
    compression: str,
    manifest_format: str,
    registry: LocalRegistry,
    umoci_tree: dict[str, tuple[object, ...]],
    tmp_path: Path,
) -> None:
    skopeo = need("skopeo")
    image_from_tars(tmp_path / "built", "diff", [make_tar(layer) for layer in LAYERS], compression=compression)
    ref = f"{registry.host}/differential/{compression}-{manifest_format}:v1"
    run_tool(
        skopeo,
        "copy",
        "--dest-tls-verify=false",
        "--format",
        manifest_format,
        f"oci:{tmp_path / 'built'}:diff",
        f"docker://{ref}",
    )

    store = RegistryStore(parse_reference(ref), RegistryOptions(tls_verify=False))
    try:
        pull(store, tmp_path / "rootfs", parse_platform("linux/amd64"))
    finally:
        store.close()

    ours = snapshot(tmp_path / "rootfs")
    assert sorted(ours) == sorted(umoci_tree)
    assert ours == umoci_tree
    # and what the layers meant really happened
    assert ours["etc/config"][4] == b"v3 recreated after the whiteout\n"
    assert sorted(k for k in ours if k.startswith("opaque/")) == ["opaque/sub", "opaque/sub/again", "opaque/upper"]
    assert "gone" not in ours
    assert ours["recreated"][0] == "dir"
    assert ours["usr/share/doc/readme"][5] == 2  # hardlinked
    assert os.getxattr(tmp_path / "rootfs/xattr-file", "user.comment") == b"hello"


def _global_header_tar() -> bytes:
    """Two files after a PAX global header naming a path: applying it would make them one file."""
    import io
    import tarfile

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT, pax_headers={"path": "merged"}) as tar:
        for name, data in (("first", b"1"), ("second", b"2")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _umoci_unpack(tmp_path: Path, layers: list[bytes]) -> tuple[int, dict[str, tuple[object, ...]] | None, str]:
    umoci = need("umoci")
    image_from_tars(tmp_path / "umoci-layout", "edge", layers)
    import subprocess

    proc = subprocess.run(
        [umoci, "unpack", "--image", f"{tmp_path / 'umoci-layout'}:edge", str(tmp_path / "bundle")],
        capture_output=True,
        text=True,
        check=False,
    )
    tree = snapshot(tmp_path / "bundle" / "rootfs") if proc.returncode == 0 else None
    return proc.returncode, tree, proc.stderr


def _ours(tmp_path: Path, layers: list[bytes]) -> dict[str, tuple[object, ...]]:
    from sealpod.oci.source import LayoutStore

    image_from_tars(tmp_path / "ours-layout", "edge", layers)
    pull(LayoutStore(str(tmp_path / "ours-layout"), "edge"), tmp_path / "rootfs", parse_platform("linux/amd64"))
    return snapshot(tmp_path / "rootfs")


def test_a_pax_global_header_is_ignored_as_containerd_and_go_do_while_umoci_refuses(tmp_path: Path) -> None:
    layers = [_global_header_tar()]
    code, _, _ = _umoci_unpack(tmp_path, layers)
    assert code != 0, "umoci refuses a layer with a PAX global header"
    ours = _ours(tmp_path, layers)
    # each entry keeps its own name: the tree a Go-based scanner (archive/tar) and containerd see
    assert ours["first"][4] == b"1"
    assert ours["second"][4] == b"2"
    assert "merged" not in ours


def test_a_symlink_followed_during_unpack_makes_the_tree_umoci_makes(tmp_path: Path) -> None:
    layers = [make_tar([E("a", "symlink", link="x/../../.."), E("a/b/f", data=b"through the link")])]
    code, theirs, err = _umoci_unpack(tmp_path, layers)
    assert code == 0, err
    assert theirs is not None
    assert _ours(tmp_path, layers) == theirs
