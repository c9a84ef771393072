"""Against a real containerd 1.6 (``ctr``, runc): the sealpod proxy snapshotter as an ordinary overlay snapshotter
for plain images, and as a remote snapshotter for encrypted ones, through containerd's metadata layer."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sealpod.oci.localregistry import LocalRegistry
from sealpod.runtime.snapshotter import MARKER_PATH, ImageMarker
from sealpod.runtime.snapshotter.proto import snapshots_pb2 as pb
from sealpod.runtime.snapshotter.remote import LABEL_REMOTE
from tests.snapshotter.harness import (
    LAYER_GZIP,
    LAYER_GZIP_ENCRYPTED,
    SNAPSHOTTER,
    Containerd,
    SnapshotterProcess,
    busybox_archive,
    chain_ids,
    digest,
    manifest_bytes,
    mount_and_read,
    namespace_md,
    need_root,
    need_tools,
    unpack_like_containerd,
    wait_for,
)

pytestmark = [pytest.mark.interop, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Containerd, SnapshotterProcess]]:
    """containerd with its own root/state/socket, in its own mount namespace, and the snapshotter it proxies to."""
    need_root()
    need_tools("containerd", "ctr", "runc", "unshare", "nsenter", "containerd-shim-runc-v2")
    base = tmp_path_factory.mktemp("ctrd")
    sockets = Path(tempfile.mkdtemp(prefix="sealpod-sn-"))
    ctrd = Containerd(base, sockets / "s.sock")
    server = SnapshotterProcess(sockets / "s.sock", base / "snapshotter", ctrd.root)
    try:
        ctrd.start()
        yield ctrd, server
    finally:
        ctrd.stop()
        server.stop()
        shutil.rmtree(sockets, ignore_errors=True)


def snapshot_table(ctrd: Containerd, namespace: str) -> dict[str, tuple[str, str]]:
    """``ctr snapshots ls``: key -> (parent, kind)."""
    out = ctrd.ctr("snapshots", "--snapshotter", SNAPSHOTTER, "ls", namespace=namespace).stdout
    rows = {}
    for line in out.splitlines()[1:]:
        fields = line.split()
        if len(fields) == 3:
            rows[fields[0]] = (fields[1], fields[2])
        elif len(fields) == 2:
            rows[fields[0]] = ("", fields[1])
    return rows


def backend_empty(server: SnapshotterProcess) -> bool:
    return server.infos() == [] and not any((server.root / "snapshots").iterdir())


def test_pull_run_and_garbage_collection(
    env: tuple[Containerd, SnapshotterProcess], registry: LocalRegistry, tmp_path: Path
) -> None:
    ctrd, server = env
    need_tools("skopeo")
    archive = tmp_path / "busybox.tar"
    _, chain = busybox_archive(archive, "sealpod/busybox:pull")
    image = f"{registry.host}/sealpod/busybox:pull"
    copy = ["skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci-archive:{archive}", f"docker://{image}"]
    subprocess.run(copy, check=True, capture_output=True)
    ctrd.ctr("images", "pull", "--plain-http", "--snapshotter", SNAPSHOTTER, image, namespace="pull")
    assert snapshot_table(ctrd, "pull") == {chain: ("", "Committed")}
    (info,) = server.infos()
    assert info.kind == pb.COMMITTED
    assert LABEL_REMOTE not in info.labels

    unique = f"hello-{uuid.uuid4()}"
    run = ctrd.ctr(
        "run", "--rm", "--cgroup", "", "--snapshotter", SNAPSHOTTER, image, "c1", "/bin/busybox", "echo", unique,
        namespace="pull",
    )  # fmt: skip
    assert run.stdout.strip() == unique

    ctrd.ctr("images", "rm", "--sync", image, namespace="pull")
    assert snapshot_table(ctrd, "pull") == {}
    wait_for(lambda: backend_empty(server), "the backend to drop the image's snapshots")
    server.assert_consistent()


def test_import_container_snapshot_and_snapshots_rm(env: tuple[Containerd, SnapshotterProcess], tmp_path: Path) -> None:
    ctrd, server = env
    archive = tmp_path / "busybox.tar"
    image = "docker.io/sealpod/busybox:import"
    _, chain = busybox_archive(archive, image)
    ctrd.ctr("images", "import", "--snapshotter", SNAPSHOTTER, str(archive), namespace="import")
    ctrd.ctr("containers", "create", "--snapshotter", SNAPSHOTTER, image, "box", namespace="import")
    assert snapshot_table(ctrd, "import") == {chain: ("", "Committed"), "box": (chain, "Active")}
    usage = ctrd.ctr("snapshots", "--snapshotter", SNAPSHOTTER, "usage", "box", namespace="import").stdout
    assert "box" in usage

    # containerd's metadata layer checks children itself; the backend agrees (FAILED_PRECONDITION)
    refused = ctrd.ctr("snapshots", "--snapshotter", SNAPSHOTTER, "rm", chain, namespace="import", check=False)
    assert refused.returncode != 0
    assert "child" in refused.stderr

    unique = f"from-task-{uuid.uuid4()}"
    started = ctrd.ctr(
        "run", "--rm", "--cgroup", "", "--snapshotter", SNAPSHOTTER, image, "c2", "/bin/sh", "-c", f"echo {unique}",
        namespace="import",
    )  # fmt: skip
    assert started.stdout.strip() == unique

    ctrd.ctr("containers", "rm", "box", namespace="import")
    ctrd.ctr("snapshots", "--snapshotter", SNAPSHOTTER, "rm", chain, namespace="import")
    ctrd.ctr("images", "rm", image, namespace="import")
    assert snapshot_table(ctrd, "import") == {}
    wait_for(lambda: backend_empty(server), "the backend to drop the removed snapshots")
    server.assert_consistent()


def test_encrypted_image_layers_are_remote_through_containerd(
    env: tuple[Containerd, SnapshotterProcess], tmp_path: Path
) -> None:
    """containerd's snapshot API driven as its unpacker drives it in a CRI pull: the metadata layer turns
    ALREADY_EXISTS into the chain ids, without any layer fetched or applied."""
    ctrd, server = env
    stub = ctrd.snapshots()
    diff_ids = [digest(f"plaintext {i} {uuid.uuid4()}".encode()) for i in range(2)]
    chain = chain_ids(diff_ids)
    layers = [digest(f"ciphertext {i}".encode()) for i in range(2)]
    image_ref = "registry.example/tenant/secret:1"

    # another namespace already has a PLAIN unpack of the same diff ids (their snapshots carry the same ref labels)
    plain_manifest = manifest_bytes([LAYER_GZIP, LAYER_GZIP], layers)
    ctrd.ctr(
        "content", "ingest", "--expected-digest", digest(plain_manifest), "m", stdin=plain_manifest, namespace="plain"
    )
    ctrd.ctr("content", "label", digest(plain_manifest), "containerd.io/gc.root=1", namespace="plain")
    plain = unpack_like_containerd(
        stub, image_ref="plain/image:1", manifest_digest=digest(plain_manifest), layer_digests=layers,
        diff_ids=diff_ids, namespace="plain",
    )  # fmt: skip
    assert plain == ["unpacked", "unpacked"]
    assert snapshot_table(ctrd, "plain") == {chain[0]: ("", "Committed"), chain[1]: (chain[0], "Committed")}

    manifest = manifest_bytes([LAYER_GZIP_ENCRYPTED, LAYER_GZIP_ENCRYPTED], layers)
    ctrd.ctr("content", "ingest", "--expected-digest", digest(manifest), "enc", stdin=manifest, namespace="enc")
    ctrd.ctr("content", "label", digest(manifest), "containerd.io/gc.root=1", namespace="enc")

    def pull() -> list[str]:
        return unpack_like_containerd(
            stub, image_ref=image_ref, manifest_digest=digest(manifest), layer_digests=layers, diff_ids=diff_ids,
            namespace="enc",
        )  # fmt: skip

    assert pull() == ["remote", "remote"]
    assert pull() == ["exists", "exists"]
    assert snapshot_table(ctrd, "enc") == {chain[0]: ("", "Committed"), chain[1]: (chain[0], "Committed")}
    top = stub.Stat(pb.StatSnapshotRequest(snapshotter=SNAPSHOTTER, key=chain[1]), metadata=namespace_md("enc"))
    assert top.info.labels[LABEL_REMOTE] == "true"  # the remote one, not the plain namespace's

    # a container on the image: its rootfs shows the marker
    ctrd.ctr("snapshots", "--snapshotter", SNAPSHOTTER, "prepare", "rootfs", chain[1], namespace="enc")
    mounts = stub.Mounts(pb.MountsRequest(snapshotter=SNAPSHOTTER, key="rootfs"), metadata=namespace_md("enc"))
    spec = [(m.type, m.source, list(m.options)) for m in mounts.mounts]
    marker = mount_and_read(spec, tmp_path / "rootfs", MARKER_PATH)
    assert ImageMarker.from_json(marker.encode()) == ImageMarker(image_ref, digest(manifest))
    remote = [i for i in server.infos() if i.labels.get(LABEL_REMOTE) == "true"]
    assert len(remote) == 2

    # nothing references these snapshots (no image, no lease): removing the container's starts a garbage
    # collection that takes all of them, remote and plain, from containerd and from the backend
    ctrd.ctr("snapshots", "--snapshotter", SNAPSHOTTER, "rm", "rootfs", namespace="enc")
    wait_for(lambda: backend_empty(server), "the backend to drop the remote and plain snapshots")
    assert snapshot_table(ctrd, "enc") == {}
    assert snapshot_table(ctrd, "plain") == {}
    server.assert_consistent()
