"""The snapshot API over gRPC: containerd's overlay semantics, mounts, error codes, labels, usage, persistence."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from sealpod.runtime.snapshotter.proto import mount_pb2
from sealpod.runtime.snapshotter.proto import snapshots_pb2 as pb
from sealpod.runtime.snapshotter.proto import snapshots_pb2_grpc as pb_grpc
from tests.snapshotter.harness import SnapshotterProcess, snapshotter, upper_dir

pytestmark = pytest.mark.timeout(60)

OVERLAY_INDEX_OFF = ["index=off"] if Path("/sys/module/overlay/parameters/index").exists() else []


def code(call: Callable[[], Any]) -> grpc.StatusCode:
    """The status code a call fails with."""
    with pytest.raises(grpc.RpcError) as info:
        call()
    err: grpc.RpcError = info.value
    return err.code()


def prepare(stub: pb_grpc.SnapshotsStub, key: str, parent: str = "", **labels: str) -> list[mount_pb2.Mount]:
    return list(stub.Prepare(pb.PrepareSnapshotRequest(key=key, parent=parent, labels=labels)).mounts)


def commit(stub: pb_grpc.SnapshotsStub, name: str, key: str, **labels: str) -> None:
    stub.Commit(pb.CommitSnapshotRequest(name=name, key=key, labels=labels))


def stat(stub: pb_grpc.SnapshotsStub, key: str) -> pb.Info:
    return stub.Stat(pb.StatSnapshotRequest(key=key)).info


def layer(stub: pb_grpc.SnapshotsStub, name: str, parent: str = "") -> Path:
    """A committed snapshot with one file ``name`` in it; returns its fs directory."""
    fs = upper_dir(prepare(stub, f"extract {name}", parent))
    (fs / name).write_text(name)
    commit(stub, name, f"extract {name}")
    return fs


def test_first_snapshot_is_a_bind_mount_of_its_fs(stub: pb_grpc.SnapshotsStub, server: SnapshotterProcess) -> None:
    mounts = prepare(stub, "a")
    assert len(mounts) == 1
    assert mounts[0].type == "bind"
    assert mounts[0].source == str(server.root / "snapshots" / "1" / "fs")
    assert list(mounts[0].options) == ["rw", "rbind"]
    assert (server.root / "snapshots" / "1" / "work").is_dir()
    info = stat(stub, "a")
    assert (info.name, info.parent, info.kind) == ("a", "", pb.ACTIVE)
    assert info.created_at.seconds > 0


def test_active_on_parents_is_an_overlay_nearest_parent_first(
    stub: pb_grpc.SnapshotsStub, server: SnapshotterProcess
) -> None:
    base = layer(stub, "base")
    top = layer(stub, "top", parent="base")
    mounts = prepare(stub, "container", "top")
    assert mounts[0].type == "overlay"
    assert mounts[0].source == "overlay"
    cid = stat(stub, "container")
    assert cid.parent == "top"
    work = server.root / "snapshots" / "3"
    assert list(mounts[0].options) == [
        *OVERLAY_INDEX_OFF,
        f"workdir={work / 'work'}",
        f"upperdir={work / 'fs'}",
        f"lowerdir={top}:{base}",
    ]
    assert stub.Mounts(pb.MountsRequest(key="container")).mounts == mounts


def test_views(stub: pb_grpc.SnapshotsStub, server: SnapshotterProcess) -> None:
    base = layer(stub, "base")
    top = layer(stub, "top", parent="base")
    one = list(stub.View(pb.ViewSnapshotRequest(key="v1", parent="base")).mounts)
    assert [(m.type, m.source, list(m.options)) for m in one] == [("bind", str(base), ["ro", "rbind"])]
    two = list(stub.View(pb.ViewSnapshotRequest(key="v2", parent="top")).mounts)
    assert [(m.type, list(m.options)) for m in two] == [("overlay", [*OVERLAY_INDEX_OFF, f"lowerdir={top}:{base}"])]
    empty = list(stub.View(pb.ViewSnapshotRequest(key="v3")).mounts)
    assert (empty[0].type, list(empty[0].options)) == ("bind", ["ro", "rbind"])
    assert not (Path(empty[0].source).parent / "work").exists()
    assert stat(stub, "v2").kind == pb.VIEW


def test_commit_keeps_the_directory_and_records_usage(stub: pb_grpc.SnapshotsStub, server: SnapshotterProcess) -> None:
    fs = Path(prepare(stub, "k")[0].source)
    (fs / "data").write_bytes(b"x" * 10000)
    active = stub.Usage(pb.UsageRequest(key="k"))
    assert active.inodes == 2
    assert active.size >= 10000
    commit(stub, "c", "k", **{"containerd.io/snapshot.ref": "c"})
    info = stat(stub, "c")
    assert (info.kind, dict(info.labels)) == (pb.COMMITTED, {"containerd.io/snapshot.ref": "c"})
    assert stub.Usage(pb.UsageRequest(key="c")) == active
    assert code(lambda: stat(stub, "k")) == grpc.StatusCode.NOT_FOUND
    assert (fs / "data").exists()


def test_error_codes(stub: pb_grpc.SnapshotsStub, server: SnapshotterProcess) -> None:
    layer(stub, "base")
    prepare(stub, "active", "base")
    stub.View(pb.ViewSnapshotRequest(key="view", parent="base"))
    nf, ae = grpc.StatusCode.NOT_FOUND, grpc.StatusCode.ALREADY_EXISTS
    fp, ia = grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.INVALID_ARGUMENT
    assert code(lambda: stat(stub, "missing")) == nf
    assert code(lambda: stub.Mounts(pb.MountsRequest(key="missing"))) == nf
    assert code(lambda: stub.Usage(pb.UsageRequest(key="missing"))) == nf
    assert code(lambda: stub.Remove(pb.RemoveSnapshotRequest(key="missing"))) == nf
    assert code(lambda: prepare(stub, "x", "missing")) == nf
    assert code(lambda: commit(stub, "new", "missing")) == nf
    assert code(lambda: prepare(stub, "active")) == ae
    assert code(lambda: prepare(stub, "base")) == ae
    assert code(lambda: stub.View(pb.ViewSnapshotRequest(key="view"))) == ae
    assert code(lambda: commit(stub, "base", "active")) == ae
    assert code(lambda: commit(stub, "base", "missing")) == ae  # containerd checks the name first
    assert code(lambda: prepare(stub, "x", "active")) == ia  # parent not committed
    assert code(lambda: commit(stub, "new", "view")) == fp
    assert code(lambda: commit(stub, "new", "base")) == fp
    assert code(lambda: stub.Mounts(pb.MountsRequest(key="base"))) == fp
    assert code(lambda: stub.Remove(pb.RemoveSnapshotRequest(key="base"))) == fp  # it has children
    assert code(lambda: prepare(stub, "big", **{"k": "v" * 4096})) == ia
    assert code(lambda: stub.Update(pb.UpdateSnapshotRequest(info=pb.Info(name="missing")))) == nf
    mask = pb.UpdateSnapshotRequest(info=pb.Info(name="base", parent="other"))
    mask.update_mask.paths.append("parent")
    assert code(lambda: stub.Update(mask)) == ia
    assert code(lambda: list(stub.List(pb.ListSnapshotsRequest(filters=["9bad"])))) == ia
    # nothing above changed the store
    assert sorted(i.name for i in server.infos()) == ["active", "base", "view"]
    server.assert_consistent()


def test_remove_deletes_the_directory(stub: pb_grpc.SnapshotsStub, server: SnapshotterProcess) -> None:
    layer(stub, "base")
    prepare(stub, "active", "base")
    stub.Remove(pb.RemoveSnapshotRequest(key="active"))
    assert not (server.root / "snapshots" / "2").exists()
    stub.Remove(pb.RemoveSnapshotRequest(key="base"))
    assert list((server.root / "snapshots").iterdir()) == []
    assert server.infos() == []
    # ids are not reused: a later snapshot gets a new directory
    prepare(stub, "again")
    assert (server.root / "snapshots" / "3").is_dir()


def test_update_labels_per_field_mask(stub: pb_grpc.SnapshotsStub, server: SnapshotterProcess) -> None:
    prepare(stub, "k", a="1", b="2")

    def update(paths: list[str], **labels: str) -> dict[str, str]:
        request = pb.UpdateSnapshotRequest(info=pb.Info(name="k", labels=labels))
        request.update_mask.paths.extend(paths)
        answer = dict(stub.Update(request).info.labels)
        assert dict(stat(stub, "k").labels) == answer
        return answer

    assert update(["labels.a"], a="10", b="ignored") == {"a": "10", "b": "2"}
    assert update(["labels.c"], c="3") == {"a": "10", "b": "2", "c": "3"}
    assert update(["labels.b"]) == {"a": "10", "c": "3"}  # absent from info: removed
    assert update(["labels"], z="26") == {"z": "26"}
    assert update([], y="25") == {"y": "25"}
    before = stat(stub, "k")
    assert before.updated_at.ToNanoseconds() >= before.created_at.ToNanoseconds()


def test_list_filters_and_batches(stub: pb_grpc.SnapshotsStub, server: SnapshotterProcess) -> None:
    layer(stub, "base")
    for i in range(120):
        prepare(stub, f"c{i}", "base", **{"containerd.io/snapshot.ref": f"ref{i % 3}"})
    batches = list(stub.List(pb.ListSnapshotsRequest()))
    assert [len(b.info) for b in batches] == [100, 21]

    def names(*filters: str) -> list[str]:
        return [i.name for b in stub.List(pb.ListSnapshotsRequest(filters=list(filters))) for i in b.info]

    assert names('labels."containerd.io/snapshot.ref"==ref1,parent=="base"') == [f"c{i}" for i in range(1, 120, 3)]
    assert names("kind==committed") == ["base"]
    assert names("name==c5", "name==c7") == ["c5", "c7"]
    assert names('name~="^c11[0-9]$"') == [f"c{i}" for i in range(110, 120)]
    assert names("parent!=base") == ["base"]
    assert len(names("labels")) == 0
    assert len(names('labels."containerd.io/snapshot.ref"')) == 120
    assert len(names("")) == 121


def test_cleanup_removes_orphan_directories(stub: pb_grpc.SnapshotsStub, server: SnapshotterProcess) -> None:
    layer(stub, "base")
    snapshots = server.root / "snapshots"
    for orphan in ("99", "new-123", "rm-456"):
        (snapshots / orphan / "fs").mkdir(parents=True)
    stub.Cleanup(pb.CleanupRequest())
    assert sorted(p.name for p in snapshots.iterdir()) == ["1"]
    server.assert_consistent()


def test_state_survives_a_restart(tmp_path: Path, short_dir: Path, content_root: Path) -> None:
    root = tmp_path / "persist"
    with snapshotter(short_dir / "a.sock", root, content_root) as first:
        layer(first.stub, "base")
        prepare(first.stub, "active", "base", x="1")
        prepare(first.stub, "gone")
        first.stub.Remove(pb.RemoveSnapshotRequest(key="gone"))
        before = first.infos()
        mounts = first.stub.Mounts(pb.MountsRequest(key="active"))
    with snapshotter(short_dir / "a.sock", root, content_root) as second:
        assert second.infos() == before
        assert second.stub.Mounts(pb.MountsRequest(key="active")) == mounts
        assert (Path(mounts.mounts[0].options[-1].removeprefix("lowerdir=")) / "base").read_text() == "base"
        prepare(second.stub, "next")
        assert stat(second.stub, "next").kind == pb.ACTIVE
        assert (root / "snapshots" / "4").is_dir()  # id 3 ("gone") is not reused
        second.assert_consistent()


def start_cli(socket: Path, root: Path, containerd_root: Path) -> subprocess.Popen[str]:
    """``sealpod snapshotter serve`` in a child process, once its socket is there."""
    code_text = (
        "from sealpod.cli.snapshotter import app; "
        f"app(['serve', '--socket', '{socket}', '--root', '{root}', '--containerd-root', '{containerd_root}'])"
    )
    proc = subprocess.Popen([sys.executable, "-c", code_text], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not socket.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the server did not start: {proc.communicate()[1]}")
        time.sleep(0.05)
    return proc


def test_serve_command_stops_cleanly_on_sigterm(tmp_path: Path, short_dir: Path) -> None:
    socket = short_dir / "cli.sock"
    proc = start_cli(socket, tmp_path / "root", tmp_path / "ctrd")
    try:
        assert socket.stat().st_mode & 0o777 == 0o600
        with grpc.insecure_channel(f"unix:{socket}") as channel:
            client = pb_grpc.SnapshotsStub(channel)
            prepare(client, "k")
            assert stat(client, "k").name == "k"
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, stderr
    assert not socket.exists()
    assert (tmp_path / "root" / "metadata.db").exists()


def test_state_survives_sigkill(tmp_path: Path, short_dir: Path, content_root: Path) -> None:
    """Every answered call is on disk (WAL, synchronous=FULL): a killed server loses nothing it acknowledged."""
    socket = short_dir / "kill.sock"
    proc = start_cli(socket, tmp_path / "root", content_root)
    try:
        with grpc.insecure_channel(f"unix:{socket}") as channel:
            client = pb_grpc.SnapshotsStub(channel)
            layer(client, "base")
            prepare(client, "active", "base", a="1")
            before = [i for b in client.List(pb.ListSnapshotsRequest()) for i in b.info]
    finally:
        proc.kill()
        proc.communicate()
    assert socket.exists()  # left by the killed server: the next server replaces it
    with snapshotter(socket, tmp_path / "root", content_root) as restarted:
        assert restarted.infos() == before
        assert dict(stat(restarted.stub, "active").labels) == {"a": "1"}
        restarted.assert_consistent()


def test_a_second_server_on_a_live_socket_is_refused(server: SnapshotterProcess, tmp_path: Path) -> None:
    from sealpod.runtime.snapshotter.server import SnapshotterServer, SocketInUseError

    with pytest.raises(SocketInUseError):
        SnapshotterServer(server.socket, tmp_path / "other", None).start()
