"""The remote decision, driven over gRPC with exactly the keys, parents and labels containerd 1.6's metadata layer
passes to a proxy snapshotter while its unpacker pulls an image through CRI."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import grpc
import pytest

from sealpod.runtime.snapshotter import MARKER_PATH, ImageMarker, read_marker
from sealpod.runtime.snapshotter.content import MAX_MANIFEST_SIZE
from sealpod.runtime.snapshotter.marker import PLACEHOLDER_ID, named_ids
from sealpod.runtime.snapshotter.proto import mount_pb2
from sealpod.runtime.snapshotter.proto import snapshots_pb2 as pb
from sealpod.runtime.snapshotter.proto import snapshots_pb2_grpc as pb_grpc
from sealpod.runtime.snapshotter.remote import LABEL_REMOTE, LABEL_SNAPSHOT_REF, remote_name
from tests.snapshotter.harness import (
    CONTENT_BLOBS,
    LAYER_GZIP,
    LAYER_GZIP_ENCRYPTED,
    SnapshotterProcess,
    chain_ids,
    config_bytes,
    digest,
    manifest_bytes,
    mount_and_read,
    need_root,
    put_blob,
    unpack_labels,
)

pytestmark = pytest.mark.timeout(60)

IMAGE = "registry.example/tenant/app:1"
DIFF_IDS = [digest(b"plain layer 0"), digest(b"plain layer 1")]
CHAIN = chain_ids(DIFF_IDS)
LAYERS = [digest(b"blob 0"), digest(b"blob 1")]


def backend_prepare(
    stub: pb_grpc.SnapshotsStub, i: int, parent: str, manifest_digest: str, seq: int
) -> tuple[str, grpc.StatusCode | None, list[mount_pb2.Mount]]:
    """Prepare layer ``i`` as containerd's metadata layer does: key ``<ns>/<seq>/extract-<unique> <chainid>``, the
    parent's backend name, the unpacker's labels. Returns the key and the error code (None on success)."""
    key = f"k8s.io/{seq}/extract-{seq}00-abcd {CHAIN[i]}"
    labels = unpack_labels(CHAIN[i], IMAGE, manifest_digest, LAYERS, i)
    try:
        mounts = stub.Prepare(pb.PrepareSnapshotRequest(snapshotter="sealpod", key=key, parent=parent, labels=labels))
    except grpc.RpcError as err:
        return key, err.code(), []
    return key, None, list(mounts.mounts)


def found_by_containerd(stub: pb_grpc.SnapshotsStub, target: str, parent: str) -> pb.Info:
    """What containerd's metadata layer picks after ALREADY_EXISTS: the first committed snapshot listed for its
    filter whose ref label and parent match."""
    filters = [f'labels."containerd.io/snapshot.ref"=={target},parent=={json.dumps(parent)}']
    for batch in stub.List(pb.ListSnapshotsRequest(snapshotter="sealpod", filters=filters)):
        for info in batch.info:
            if info.kind == pb.COMMITTED and info.labels[LABEL_SNAPSHOT_REF] == target and info.parent == parent:
                return info
    raise AssertionError(f"containerd would not find {target} on {parent!r}")


def encrypted_manifest(content_root: Path) -> str:
    return put_blob(content_root, manifest_bytes([LAYER_GZIP, LAYER_GZIP_ENCRYPTED], LAYERS))


def fs_of(server: SnapshotterProcess, name: str) -> Path:
    with server.server.snapshotter.store.read() as tx:
        return server.root / "snapshots" / tx.get_info(name)[0] / "fs"


def test_encrypted_image_layers_become_remote_snapshots(
    stub: pb_grpc.SnapshotsStub, server: SnapshotterProcess, content_root: Path
) -> None:
    manifest = encrypted_manifest(content_root)
    parent = ""
    names = []
    for i in range(2):
        key, err, _ = backend_prepare(stub, i, parent, manifest, seq=10 + i)
        assert err == grpc.StatusCode.ALREADY_EXISTS
        info = found_by_containerd(stub, CHAIN[i], parent)
        assert info.name == remote_name(key)
        assert dict(info.labels) == {**unpack_labels(CHAIN[i], IMAGE, manifest, LAYERS, i), LABEL_REMOTE: "true"}
        with pytest.raises(grpc.RpcError):
            stub.Stat(pb.StatSnapshotRequest(key=key))  # no extraction snapshot is left behind
        fs = fs_of(server, info.name)
        assert sorted(str(p.relative_to(fs)) for p in fs.rglob("*")) == [".sealpod", MARKER_PATH]
        assert json.loads((fs / MARKER_PATH).read_bytes()) == {"image": IMAGE, "manifest": manifest}
        names.append(info.name)
        parent = info.name
    assert stub.Stat(pb.StatSnapshotRequest(key=names[1])).info.parent == names[0]

    # the container's snapshot on the chain is an ordinary overlay whose rootfs shows the marker
    mounts = list(stub.Prepare(pb.PrepareSnapshotRequest(key="k8s.io/12/container", parent=names[1])).mounts)
    assert mounts[0].type == "overlay"
    assert f"lowerdir={fs_of(server, names[1])}:{fs_of(server, names[0])}" in mounts[0].options
    assert read_marker(fs_of(server, names[1])) == ImageMarker(IMAGE, manifest)
    need_root()
    marker = mount_and_read(
        [(m.type, m.source, list(m.options)) for m in mounts], server.root.parent / "rootfs", MARKER_PATH
    )
    assert ImageMarker.from_json(marker.encode()) == ImageMarker(IMAGE, manifest)
    server.assert_consistent()


def test_a_named_image_user_gets_placeholder_passwd_and_group_entries(
    stub: pb_grpc.SnapshotsStub, server: SnapshotterProcess, content_root: Path
) -> None:
    """containerd's CRI resolves the config's ``User: app:staff`` in the container's rootfs when it creates the
    container: the remote snapshot maps the names to nobody, never to the real ids (only the enclave knows them)."""
    config = put_blob(content_root, config_bytes("app:staff"))
    manifest = put_blob(
        content_root, manifest_bytes([LAYER_GZIP_ENCRYPTED], LAYERS[:1], config=config_bytes("app:staff"))
    )
    assert config != manifest
    key, err, _ = backend_prepare(stub, 0, "", manifest, seq=1)
    assert err == grpc.StatusCode.ALREADY_EXISTS
    fs = fs_of(server, remote_name(key))
    assert sorted(str(p.relative_to(fs)) for p in fs.rglob("*") if p.is_file()) == [
        MARKER_PATH,
        "etc/group",
        "etc/passwd",
    ]
    nobody = PLACEHOLDER_ID
    assert (
        fs / "etc/passwd"
    ).read_text() == f"app:x:{nobody}:{nobody}:sealpod placeholder:/nonexistent:/sbin/nologin\n"
    assert (fs / "etc/group").read_text() == f"staff:x:{nobody}:\n"
    assert (fs / "etc/passwd").stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize(
    ("user", "names"),
    [
        ("", (None, None)),
        ("app", ("app", None)),
        ("app:staff", ("app", "staff")),
        ("1000:staff", (None, "staff")),
        ("app:1000", ("app", None)),
        ("1000:1000", (None, None)),
        ("a:b:c", (None, None)),
        ("bad name\nroot:x:0:0::/:/bin/sh", (None, None)),
        ("../x", (None, None)),
    ],
)
def test_named_ids(user: str, names: tuple[str | None, str | None]) -> None:
    assert named_ids(user) == names


def test_plain_image_is_unpacked_normally(
    stub: pb_grpc.SnapshotsStub, server: SnapshotterProcess, content_root: Path
) -> None:
    manifest = put_blob(content_root, manifest_bytes([LAYER_GZIP, LAYER_GZIP], LAYERS))
    key, err, mounts = backend_prepare(stub, 0, "", manifest, seq=1)
    assert err is None
    assert mounts[0].type == "bind"
    assert stub.Stat(pb.StatSnapshotRequest(key=key)).info.kind == pb.ACTIVE
    assert read_marker(Path(mounts[0].source)) is None


def test_a_pull_without_cri_labels_is_not_remote(stub: pb_grpc.SnapshotsStub, content_root: Path) -> None:
    encrypted_manifest(content_root)
    labels = {LABEL_SNAPSHOT_REF: CHAIN[0]}  # what `ctr images pull` passes
    mounts = stub.Prepare(pb.PrepareSnapshotRequest(key="default/1/extract-1 x", labels=labels)).mounts
    assert mounts[0].type == "bind"


def _bad_manifest(content_root: Path, case: str) -> str:
    """Set up a broken manifest; returns the digest label to pass."""
    good = manifest_bytes([LAYER_GZIP_ENCRYPTED, LAYER_GZIP_ENCRYPTED], LAYERS)
    blobs = content_root / CONTENT_BLOBS
    blobs.mkdir(parents=True, exist_ok=True)
    if case == "missing":
        return digest(good)
    if case == "traversal":
        put_blob(content_root, good)
        return "sha256:../../../../" + digest(good).removeprefix("sha256:")
    if case == "sha512":
        return "sha512:" + "a" * 128
    if case == "uppercase":
        return put_blob(content_root, good).upper().replace("SHA256", "sha256")
    if case == "mismatch":
        name = digest(good)
        (blobs / name.removeprefix("sha256:")).write_bytes(good + b" ")
        return name
    if case == "symlink":
        real = content_root / "elsewhere.json"
        real.write_bytes(good)
        (blobs / digest(good).removeprefix("sha256:")).symlink_to(real)
        return digest(good)
    if case == "directory":
        (blobs / digest(good).removeprefix("sha256:")).mkdir()
        return digest(good)
    if case == "too-big":
        return put_blob(content_root, good[:-1] + b" " * (MAX_MANIFEST_SIZE + 1) + good[-1:])
    bodies = {
        "not-json": b"\x00not json",
        "json-array": b"[1, 2]",
        "index": json.dumps({"schemaVersion": 2, "manifests": []}).encode(),
        "layer-without-media-type": json.dumps({"layers": [{"digest": LAYERS[0]}]}).encode(),
        "layers-not-a-list": json.dumps({"layers": {"mediaType": LAYER_GZIP_ENCRYPTED}}).encode(),
    }
    return put_blob(content_root, bodies[case])


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "traversal",
        "sha512",
        "uppercase",
        "mismatch",
        "symlink",
        "directory",
        "too-big",
        "not-json",
        "json-array",
        "index",
        "layer-without-media-type",
        "layers-not-a-list",
    ],
)
def test_an_unusable_manifest_means_not_remote(
    case: str,
    stub: pb_grpc.SnapshotsStub,
    server: SnapshotterProcess,
    content_root: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Decided: such a layer is unpacked as usual (containerd then fails to apply an encrypted layer, having no
    keys), with a warning naming the problem; no error, so that ordinary images are never blocked by it."""
    label = _bad_manifest(content_root, case)
    with caplog.at_level(logging.WARNING, logger="sealpod.runtime.snapshotter"):
        key, err, _ = backend_prepare(stub, 0, "", label, seq=1)
    assert err is None
    assert stub.Stat(pb.StatSnapshotRequest(key=key)).info.kind == pb.ACTIVE
    assert "unusable" in caplog.text
    server.assert_consistent()


def test_the_new_remote_snapshot_is_listed_before_a_plain_one_of_the_same_chain(
    stub: pb_grpc.SnapshotsStub, server: SnapshotterProcess, content_root: Path
) -> None:
    """Another namespace unpacked a plain image with the same diff ids (an encrypted layer's diff id is its
    plaintext's): containerd must still pick the remote snapshot, the first one listed."""
    plain_manifest = put_blob(content_root, manifest_bytes([LAYER_GZIP, LAYER_GZIP], LAYERS))
    key, err, _ = backend_prepare(stub, 0, "", plain_manifest, seq=1)
    assert err is None
    plain = f"other/2/{CHAIN[0]}"
    stub.Commit(pb.CommitSnapshotRequest(name=plain, key=key, labels={LABEL_SNAPSHOT_REF: CHAIN[0]}))

    key, err, _ = backend_prepare(stub, 0, "", encrypted_manifest(content_root), seq=3)
    assert err == grpc.StatusCode.ALREADY_EXISTS
    assert found_by_containerd(stub, CHAIN[0], "").name == remote_name(key)

    # and a second pull of it into a third namespace gets its own, newest, remote snapshot
    key2, err, _ = backend_prepare(stub, 0, "", encrypted_manifest(content_root), seq=4)
    assert err == grpc.StatusCode.ALREADY_EXISTS
    assert found_by_containerd(stub, CHAIN[0], "").name == remote_name(key2)
    server.assert_consistent()


def test_remote_snapshots_are_removed_like_others(
    stub: pb_grpc.SnapshotsStub, server: SnapshotterProcess, content_root: Path
) -> None:
    key, err, _ = backend_prepare(stub, 0, "", encrypted_manifest(content_root), seq=1)
    assert err == grpc.StatusCode.ALREADY_EXISTS
    assert stub.Usage(pb.UsageRequest(key=remote_name(key))).inodes == 3  # fs, .sealpod, image.json
    stub.Remove(pb.RemoveSnapshotRequest(key=remote_name(key)))
    assert server.infos() == []
    assert os.listdir(server.root / "snapshots") == []


def test_a_remote_prepare_on_a_missing_parent_fails_like_any_prepare(
    stub: pb_grpc.SnapshotsStub, server: SnapshotterProcess, content_root: Path
) -> None:
    _, err, _ = backend_prepare(stub, 1, "no-such-parent", encrypted_manifest(content_root), seq=1)
    assert err == grpc.StatusCode.NOT_FOUND
    assert server.infos() == []
    server.assert_consistent()
