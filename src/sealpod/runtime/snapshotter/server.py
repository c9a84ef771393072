"""Serving the snapshot API on a unix socket until SIGTERM or SIGINT."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import stat
import threading
from concurrent import futures
from pathlib import Path
from types import FrameType

import grpc

from sealpod.errors import SealpodError
from sealpod.runtime.snapshotter.content import ContentStore
from sealpod.runtime.snapshotter.overlay import OverlaySnapshotter
from sealpod.runtime.snapshotter.remote import RemoteDecider
from sealpod.runtime.snapshotter.service import SnapshotsService, add_to_server

log = logging.getLogger(__name__)

DEFAULT_CONTAINERD_ROOT = Path("/var/lib/containerd")


class SocketInUseError(SealpodError):
    """Another process answers on the socket path."""


def _clear_stale_socket(path: Path) -> None:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise SocketInUseError(f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink()  # nobody listens: left by a crash
    else:
        raise SocketInUseError(f"another server listens on {path}")
    finally:
        probe.close()


class SnapshotterServer:
    """The gRPC server of one snapshotter root; ``containerd_root`` None disables remote snapshots."""

    def __init__(self, socket_path: Path, root: Path, containerd_root: Path | None, max_workers: int = 16) -> None:
        self.socket_path = socket_path
        self.snapshotter = OverlaySnapshotter(root)
        remote = RemoteDecider(self.snapshotter, ContentStore(containerd_root)) if containerd_root else None
        self.service = SnapshotsService(self.snapshotter, remote)
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="snapshots"))
        add_to_server(self.service, self._server)

    def start(self) -> SnapshotterServer:
        """Listen on the socket (mode 0600: containerd runs as root)."""
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        _clear_stale_socket(self.socket_path)
        old = os.umask(0o177)  # bind() creates the socket as 0600: never more open, not even briefly
        try:
            self._server.add_insecure_port(f"unix:{self.socket_path}")
            self._server.start()
        finally:
            os.umask(old)
        self.socket_path.chmod(0o600)
        log.info("snapshotter serving on %s, root %s", self.socket_path, self.snapshotter.root)
        return self

    def stop(self, grace: float = 5.0) -> None:
        """Finish running calls (up to ``grace`` seconds), then close the store and remove the socket."""
        self._server.stop(grace).wait()
        self.snapshotter.close()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        log.info("snapshotter stopped")


def serve(socket_path: Path, root: Path, containerd_root: Path | None = DEFAULT_CONTAINERD_ROOT) -> None:
    """Serve until SIGTERM or SIGINT, then shut down cleanly (call from the main thread)."""
    stopping = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stopping.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server = SnapshotterServer(socket_path, root, containerd_root).start()
        try:
            stopping.wait()
        finally:
            server.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
