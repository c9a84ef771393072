"""Fixtures: an in-process snapshotter server on a short socket path, with its own containerd content root."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from sealpod.runtime.snapshotter.proto import snapshots_pb2_grpc as pb_grpc
from tests.snapshotter.harness import SnapshotterProcess, snapshotter


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path, for unix sockets (108-byte limit)."""
    path = Path(tempfile.mkdtemp(prefix="sealpod-sn-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def content_root(tmp_path: Path) -> Path:
    """A containerd root whose content store the server reads manifests from."""
    root = tmp_path / "containerd"
    root.mkdir()
    return root


@pytest.fixture
def server(tmp_path: Path, short_dir: Path, content_root: Path) -> Iterator[SnapshotterProcess]:
    """The snapshotter, served in this process."""
    with snapshotter(short_dir / "s.sock", tmp_path / "snapshotter", content_root) as process:
        yield process


@pytest.fixture
def stub(server: SnapshotterProcess) -> pb_grpc.SnapshotsStub:
    """A gRPC client of the server."""
    return server.stub
