"""Test harness: a private containerd 1.6 with the sealpod snapshotter as a proxy plugin, an in-process snapshotter
server, an OCI archive of /bin/busybox, and a client that drives Prepare the way containerd's unpacker does.

containerd runs in its own mount namespace (``unshare --mount --propagation private``) with a tmpfs over /run, so its
/run/containerd (shim sockets, runc state, ctr's fifos) never touches the host; ``ctr`` joins that namespace with
``nsenter``. Everything else lives under the test's directory. Usable by other tests (the CRI end-to-end test):
pass ``extra_config`` to enable CRI settings.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from sealpod.runtime.snapshotter.content import CONTENT_BLOBS
from sealpod.runtime.snapshotter.proto import mount_pb2
from sealpod.runtime.snapshotter.proto import snapshots_pb2 as pb
from sealpod.runtime.snapshotter.proto import snapshots_pb2_grpc as pb_grpc
from sealpod.runtime.snapshotter.remote import (
    LABEL_IMAGE_LAYERS,
    LABEL_IMAGE_REF,
    LABEL_LAYER_DIGEST,
    LABEL_MANIFEST_DIGEST,
    LABEL_SNAPSHOT_REF,
)
from sealpod.runtime.snapshotter.server import SnapshotterServer

SNAPSHOTTER = "sealpod"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
LAYER_GZIP_ENCRYPTED = LAYER_GZIP + "+encrypted"

# plugins that probe the host or need more setup than ctr does
DISABLED_PLUGINS = [
    "io.containerd.grpc.v1.cri",
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.zfs",
    "io.containerd.internal.v1.opt",
    "io.containerd.tracing.processor.v1.otlp",
]


def digest(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def chain_ids(diff_ids: list[str]) -> list[str]:
    """The chain id of each layer prefix (OCI image-spec identity.ChainID)."""
    chain: list[str] = []
    for diff_id in diff_ids:
        chain.append(diff_id if not chain else digest(f"{chain[-1]} {diff_id}".encode()))
    return chain


def unpack_labels(
    chain_id: str, image_ref: str, manifest_digest: str, layer_digests: list[str], i: int
) -> dict[str, str]:
    """The labels containerd's unpacker passes to Prepare for layer ``i`` of a CRI pull (annotations enabled)."""
    return {
        LABEL_SNAPSHOT_REF: chain_id,
        LABEL_IMAGE_REF: image_ref,
        LABEL_MANIFEST_DIGEST: manifest_digest,
        LABEL_LAYER_DIGEST: layer_digests[i],
        LABEL_IMAGE_LAYERS: ",".join(layer_digests[i:]),
    }


def config_bytes(user: str = "") -> bytes:
    """An image config (what CRI reads the image's ``User`` from)."""
    return json.dumps(
        {"architecture": "amd64", "os": "linux", "config": {"User": user}, "rootfs": {"type": "layers", "diff_ids": []}}
    ).encode()


def manifest_bytes(
    layer_media_types: list[str], layer_digests: list[str] | None = None, config: bytes = b"{}"
) -> bytes:
    """An image manifest with layers of the given media types (digests made up unless given)."""
    digests = layer_digests or [digest(f"layer {i}".encode()) for i in range(len(layer_media_types))]
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": digest(config), "size": len(config)},
        "layers": [{"mediaType": t, "digest": d, "size": 1} for t, d in zip(layer_media_types, digests, strict=True)],
    }
    return json.dumps(doc).encode()


def put_blob(containerd_root: Path, data: bytes) -> str:
    """Write ``data`` into a content store directory as containerd does; returns its digest."""
    name = digest(data)
    path = containerd_root / CONTENT_BLOBS / name.removeprefix("sha256:")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return name


def busybox_archive(path: Path, name: str) -> tuple[str, str]:
    """An OCI archive (for ``ctr images import`` or skopeo's ``oci-archive:``) of one layer holding the static
    /bin/busybox, named ``name``; returns the manifest digest and the layer's chain id."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        bin_dir = tarfile.TarInfo("bin")
        bin_dir.type, bin_dir.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(bin_dir)
        data = Path("/bin/busybox").read_bytes()
        binary = tarfile.TarInfo("bin/busybox")
        binary.size, binary.mode = len(data), 0o755
        tar.addfile(binary, io.BytesIO(data))
        sh = tarfile.TarInfo("bin/sh")
        sh.type, sh.linkname = tarfile.SYMTYPE, "busybox"
        tar.addfile(sh)
    plain = layer.getvalue()
    blob = gzip.compress(plain, compresslevel=1, mtime=0)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": [digest(plain)]},
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": digest(config), "size": len(config)},
            "layers": [{"mediaType": LAYER_GZIP, "digest": digest(blob), "size": len(blob)}],
        }
    ).encode()
    tag = name.rpartition(":")[2]
    index = json.dumps(
        {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": digest(manifest),
                    "size": len(manifest),
                    "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": tag},
                }
            ],
        }
    ).encode()
    with tarfile.open(path, mode="w") as out:
        for member, content in [
            ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
            ("index.json", index),
            *[(f"blobs/sha256/{digest(b).removeprefix('sha256:')}", b) for b in (blob, config, manifest)],
        ]:
            info = tarfile.TarInfo(member)
            info.size = len(content)
            out.addfile(info, io.BytesIO(content))
    return digest(manifest), digest(plain)


class SnapshotterProcess:
    """An in-process snapshotter server and a client stub for it."""

    def __init__(self, socket: Path, root: Path, containerd_root: Path | None) -> None:
        self.socket, self.root, self.containerd_root = socket, root, containerd_root
        self.server = SnapshotterServer(socket, root, containerd_root).start()
        self.channel = grpc.insecure_channel(f"unix:{socket}")
        self.stub = pb_grpc.SnapshotsStub(self.channel)

    def stop(self) -> None:
        """Close the client and stop the server."""
        self.channel.close()
        self.server.stop(grace=1.0)

    def infos(self) -> list[pb.Info]:
        """Every snapshot the server holds."""
        return [info for batch in self.stub.List(pb.ListSnapshotsRequest()) for info in batch.info]

    def assert_consistent(self) -> None:
        """Every snapshot has its directory and every directory (no leftovers) belongs to a snapshot."""
        with self.server.snapshotter.store.read() as tx:
            ids = tx.ids()
        dirs = {p.name for p in (self.root / "snapshots").iterdir()}
        assert dirs == ids, f"directories {sorted(dirs)} != snapshot ids {sorted(ids)}"
        for snapshot_id in ids:
            assert (self.root / "snapshots" / snapshot_id / "fs").is_dir()


def _stop_process(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL, a process that is not our child (a shim)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


class Containerd:
    """A private containerd whose ``sealpod`` proxy snapshotter is at ``snapshotter_socket``."""

    def __init__(self, base: Path, snapshotter_socket: Path, extra_config: str = "") -> None:
        self.base = base
        self.root = base / "root"
        self.state = base / "state"
        self.address = base / "c.sock"
        self.snapshotter_socket = snapshotter_socket
        self.extra_config = extra_config
        self.process: subprocess.Popen[bytes] | None = None
        self._channel: grpc.Channel | None = None

    def config(self) -> str:
        """containerd's config.toml (version 2)."""
        disabled = ", ".join(f'"{p}"' for p in DISABLED_PLUGINS)
        return (
            f'version = 2\nroot = "{self.root}"\nstate = "{self.state}"\ndisabled_plugins = [{disabled}]\n'
            f'[grpc]\n  address = "{self.address}"\n[ttrpc]\n  address = "{self.address}.ttrpc"\n'
            '[debug]\n  level = "debug"\n'
            # every deletion starts a garbage collection, so that removed snapshots reach the backend promptly
            '[plugins."io.containerd.gc.v1.scheduler"]\n  deletion_threshold = 1\n'
            f'[proxy_plugins.{SNAPSHOTTER}]\n  type = "snapshot"\n  address = "{self.snapshotter_socket}"\n'
            f"{self.extra_config}"
        )

    def start(self, timeout: float = 30.0) -> Containerd:
        """Start containerd in its own mount namespace and wait for its socket."""
        self.base.mkdir(parents=True, exist_ok=True)
        config = self.base / "config.toml"
        config.write_text(self.config())
        script = (
            "set -e; mount -t tmpfs -o mode=0755 tmpfs /run; mkdir -m 0711 /run/containerd; "
            f'exec containerd --config "{config}"'
        )
        log = (self.base / "containerd.log").open("wb")
        self.process = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"containerd exited with {self.process.returncode}:\n{self.log()[-3000:]}")
            if self.ctr("version", check=False).returncode == 0:
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"containerd did not start within {timeout} s:\n{self.log()[-3000:]}")

    def log(self) -> str:
        """containerd's log so far."""
        return (self.base / "containerd.log").read_text(errors="replace")

    def ctr(
        self, *args: str, namespace: str = "test", check: bool = True, stdin: bytes | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``ctr`` in containerd's mount namespace (its fifos live in the private /run); paths must be absolute."""
        assert self.process is not None
        cmd = ["nsenter", "-t", str(self.process.pid), "-m", "--", "ctr", "-a", str(self.address), "-n", namespace]
        env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}  # ctr would put its fifos there
        raw = subprocess.run([*cmd, *args], capture_output=True, input=stdin, env=env, check=False, timeout=120)
        proc = subprocess.CompletedProcess(
            raw.args, raw.returncode, raw.stdout.decode(errors="replace"), raw.stderr.decode(errors="replace")
        )
        if check and proc.returncode != 0:
            pytest.fail(f"ctr {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def shims(self) -> list[int]:
        """Pids of the shims this containerd started (they outlive it)."""
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"containerd-shim-runc-v2") and str(self.address).encode() in argv:
                pids.append(int(entry.name))
        return pids

    def stop(self) -> None:
        """Stop containerd and any shim it left; its namespace (and mounts) go with them."""
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
        for pid in self.shims():
            _stop_process(pid)

    def snapshots(self) -> pb_grpc.SnapshotsStub:
        """A client of containerd's own snapshot API (through its metadata layer)."""
        if self._channel is None:
            self._channel = grpc.insecure_channel(f"unix:{self.address}")
        return pb_grpc.SnapshotsStub(self._channel)


def namespace_md(namespace: str) -> tuple[tuple[str, str], ...]:
    """The gRPC metadata naming a containerd namespace."""
    return (("containerd-namespace", namespace),)


def unpack_like_containerd(
    stub: pb_grpc.SnapshotsStub,
    *,
    image_ref: str,
    manifest_digest: str,
    layer_digests: list[str],
    diff_ids: list[str],
    namespace: str = "test",
) -> list[str]:
    """Drive containerd's snapshot API as its unpacker does in a CRI pull (unpacker.go): per layer, Stat the chain
    id; else Prepare ``extract-<unique> <chainid>`` on the previous chain id with the labels, and on ALREADY_EXISTS
    Stat the chain id again; else "apply" the layer (a file ``layer-<i>`` written into the upper directory) and
    Commit it as the chain id with the same labels. Returns per layer "exists", "remote" or "unpacked"."""
    md = namespace_md(namespace)
    outcome = []
    parent = ""
    for i, chain_id in enumerate(chain_ids(diff_ids)):
        try:
            stub.Stat(pb.StatSnapshotRequest(snapshotter=SNAPSHOTTER, key=chain_id), metadata=md)
            outcome.append("exists")
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.NOT_FOUND:
                raise
            key = f"extract-{i}-{time.monotonic_ns()} {chain_id}"
            labels = unpack_labels(chain_id, image_ref, manifest_digest, layer_digests, i)
            try:
                mounts = stub.Prepare(
                    pb.PrepareSnapshotRequest(snapshotter=SNAPSHOTTER, key=key, parent=parent, labels=labels),
                    metadata=md,
                ).mounts
            except grpc.RpcError as perr:
                if perr.code() != grpc.StatusCode.ALREADY_EXISTS:
                    raise
                stub.Stat(pb.StatSnapshotRequest(snapshotter=SNAPSHOTTER, key=chain_id), metadata=md)
                outcome.append("remote")
            else:
                (upper_dir(list(mounts)) / f"layer-{i}").write_text(diff_ids[i])
                stub.Commit(
                    pb.CommitSnapshotRequest(snapshotter=SNAPSHOTTER, name=chain_id, key=key, labels=labels),
                    metadata=md,
                )
                outcome.append("unpacked")
        parent = chain_id
    return outcome


def upper_dir(mounts: list[mount_pb2.Mount]) -> Path:
    """The writable directory of an active snapshot's mounts (a bind source, or the overlay's upperdir)."""
    if mounts[0].type == "bind":
        return Path(mounts[0].source)
    return Path(next(o.removeprefix("upperdir=") for o in mounts[0].options if o.startswith("upperdir=")))


def mount_and_read(mounts: list[tuple[str, str, list[str]]], target: Path, relative: str) -> str:
    """Mount ``mounts`` (type, source, options) on ``target`` in a throw-away mount namespace and read a file."""
    target.mkdir(parents=True, exist_ok=True)
    script = "set -e; " + "; ".join(
        f"mount -t {kind} -o '{','.join(options)}' '{source}' '{target}'" for kind, source, options in mounts
    )
    script += f"; cat '{target / relative}'"
    proc = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(f"mounting {mounts} failed: {proc.stderr}")
    return proc.stdout


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Poll until ``predicate()`` holds (containerd's garbage collection runs in the background)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def need_root() -> None:
    """containerd, mounts and runc need root."""
    if os.geteuid() != 0:
        pytest.fail("these tests run containerd and mount filesystems: run them as root")


def need_tools(*tools: str) -> None:
    """Fail (not skip) without a tool: setup.sh installs them."""
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed: run ./setup.sh test")


@contextlib.contextmanager
def snapshotter(socket: Path, root: Path, containerd_root: Path | None) -> Iterator[SnapshotterProcess]:
    """An in-process snapshotter for the duration of the block."""
    process = SnapshotterProcess(socket, root, containerd_root)
    try:
        yield process
    finally:
        process.stop()
