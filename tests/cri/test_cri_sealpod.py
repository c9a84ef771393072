"""Kubernetes' way in: a real containerd driven through CRI exactly as kubelet drives it, with the ``sealpod``
runtime handler (``sealpod-runtime``) and the ``sealpod`` snapshotter set up by ``sealpod node containerd-config``.

An encrypted, signed image is pulled by CRI without any key (containerd fetches no layer), and a pod with
``runtime_handler = "sealpod"`` and an ordinary container spec (image, optional command) runs it in the enclave: the
workload's output is in the container's CRI log and its exit code in ContainerStatus. Two such pods run at once,
each with its own enclave. Nothing of the image's plaintext reaches containerd's content store or snapshots.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sealpod.oci.localregistry import LocalRegistry
from sealpod.runtime.containerd_config import sealpod_settings
from tests.cri.containerd import Containerd, CriClient, RuntimeHandler, push_busybox_image, push_sandbox_image
from tests.cri.proto import cri_subset_pb2 as pb
from tests.e2e.test_run import CANARY_FILE, RUN_POLICY, _deploy
from tests.helpers import file_contains
from tests.kbs.conftest import KbsProcess, register_enclave

BIN = Path(sys.executable).parent
SEALPOD = str(BIN / "sealpod")


@pytest.fixture
def snapshotter(tmp_path: Path) -> Iterator[tuple[Path, Path, Path]]:
    """``sealpod snapshotter serve`` for a containerd whose root is ``tmp_path/containerd/root``; stopped after."""
    socket, root, containerd_root = tmp_path / "snap.sock", tmp_path / "snapshots", tmp_path / "containerd" / "root"
    log = (tmp_path / "snapshotter.log").open("wb")
    process = subprocess.Popen(
        [SEALPOD, "snapshotter", "serve", "--socket", socket, "--root", root, "--containerd-root", containerd_root],
        stdout=log,
        stderr=log,
    )
    try:
        deadline = time.monotonic() + 20
        while not socket.exists():
            assert process.poll() is None, (tmp_path / "snapshotter.log").read_text()
            assert time.monotonic() < deadline, "the snapshotter did not create its socket"
            time.sleep(0.05)
        yield socket, root, containerd_root
    finally:
        process.terminate()
        process.wait(10)
        log.close()


def _runtime_wrapper(tmp_path: Path, kbs_url: str, state: str) -> Path:
    """The node's runtime config, and the runtime handler's binary: sealpod-runtime with that config."""
    config = tmp_path / "runtime.toml"
    config.write_text(f'kbs_url = "{kbs_url}"\nallow_sim = true\nregistry_tls_verify = false\nstate_dir = "{state}"\n')
    wrapper = tmp_path / "sealpod-runtime"
    wrapper.write_text(f'#!/bin/sh\nSEALPOD_RUNTIME_CONFIG={config} exec {BIN / "sealpod-runtime"} "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


def _containerd(tmp_path: Path, registry: LocalRegistry, socket: Path, wrapper: Path) -> Containerd:
    """containerd configured the way `sealpod node containerd-config` configures a node."""
    settings = sealpod_settings(str(wrapper), str(socket))
    cri = settings["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]
    handler = cri["runtimes"]["sealpod"]
    return Containerd(
        tmp_path / "containerd",
        sandbox_image=push_sandbox_image(registry.host, tmp_path / "images"),
        registries=[registry.host],
        runtimes={
            "sealpod": RuntimeHandler(
                binary_name=handler["options"]["BinaryName"],
                runtime_type=handler["runtime_type"],
                pod_annotations=tuple(handler["pod_annotations"]),
            )
        },
        snapshotter=cri["snapshotter"],
        proxy_plugins={name: (p["type"], p["address"]) for name, p in settings["proxy_plugins"].items()},
    )


def _memory_root() -> Path:
    v1 = Path("/sys/fs/cgroup/memory")
    return v1 if (v1 / "cgroup.procs").exists() else Path("/sys/fs/cgroup")


def _memory_cgroup(pid: int) -> Path:
    """The memory cgroup directory of ``pid`` (cgroup v1's memory hierarchy, else the unified one)."""
    lines = [line.split(":", 2) for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines()]
    path = next((p for _, controllers, p in lines if "memory" in controllers.split(",")), None)
    if path is None:
        path = next(p for _, controllers, p in lines if controllers == "")
    return _memory_root() / path.lstrip("/")


def _files_holding(root: Path, needle: bytes) -> list[Path]:
    found = []
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            path = Path(dirpath) / name
            if path.is_file() and not path.is_symlink() and file_contains(path, needle):
                found.append(path)
    return found


def test_encrypted_pods_run_in_their_enclaves_through_cri(
    tmp_path: Path,
    registry: LocalRegistry,
    kbs_factory: Callable[..., KbsProcess],
    node: dict[str, str],
    snapshotter: tuple[Path, Path, Path],
) -> None:
    server = kbs_factory()
    image = _deploy(tmp_path, registry, server, node, run_policy=RUN_POLICY)
    socket, snapshots, containerd_root = snapshotter
    wrapper = _runtime_wrapper(tmp_path, server.url, node["SEALPOD_STATE_DIR"])
    with _containerd(tmp_path, registry, socket, wrapper) as ctd:
        configured = tomllib.loads(ctd.config_path.read_text())
        assert configured["proxy_plugins"] == sealpod_settings(str(wrapper), str(socket))["proxy_plugins"]
        cri: CriClient = ctd.client()
        pod_a = cri.run_pod("app-a", runtime_handler="sealpod")
        pod_b = cri.run_pod("app-b", runtime_handler="sealpod")
        assert cri.pod_status(pod_a).state == pb.SANDBOX_READY

        # PullImage needs no key: the snapshotter keeps containerd from fetching or unpacking the encrypted layers
        image_ref = cri.pull_image(image, pod_id=pod_a)
        assert image_ref.startswith("sha256:")

        # pod b: the same image with a command of its own (the tenant's run policy allows commands), still running
        # when pod a's enclave has run the image's own entrypoint to its end: two enclaves at once
        slow = cri.create_container(
            pod_b, "slow", image, command=["/bin/sh", "-c", "echo slow-started; busybox sleep 3; echo slow-done"]
        )
        cri.start_container(slow)
        slow_log = Path(cri.container_status(slow).log_path)
        cri.wait_for_log_line(slow_log, "slow-started", timeout=60)
        app = cri.create_container(pod_a, "app", image)  # the pod spec of an ordinary runc pod: image only
        cri.start_container(app)
        status = cri.wait_for_exit(app, timeout=60)
        assert cri.container_status(slow).state == pb.CONTAINER_RUNNING
        assert status.exit_code == 7  # the image's own script, through the enclave
        log = "\n".join(line.text for line in CriClient.read_log(Path(status.log_path)))
        assert "user=1000:1000" in log  # the image's user, workdir and file, from the verified image
        assert "cwd=/app" in log
        assert CANARY_FILE.decode() in log
        assert "pid=1" in log
        assert "links=2" in log  # the pod's network namespace (lo and the pod's eth0), not the host's
        assert "mount=no" in log
        assert "drops the host's variables" in log  # kubelet/containerd variables the run policy does not allow
        slow_status = cri.wait_for_exit(slow, timeout=60)
        assert slow_status.exit_code == 0
        cri.wait_for_log_line(slow_log, "slow-done")

        # kubelet stops a running enclave container: SIGTERM reaches the workload (here a shell trapping it), and
        # nothing of the enclave (workload, gocryptfs) outlives the container
        trap = "trap 'echo got-term; exit 3' TERM; echo waiting; while :; do busybox sleep 1; done"
        long = cri.create_container(pod_b, "long", image, command=["/bin/sh", "-c", trap])
        cri.start_container(long)
        long_log = Path(cri.container_status(long).log_path)
        cri.wait_for_log_line(long_log, "waiting", timeout=60)
        # the enclave is inside the container's cgroup, under the pod's (what kubelet accounts and limits)
        long_cgroup = _memory_cgroup(cri.container_pid(long))
        assert long_cgroup.parent.parent == _memory_root() / ctd.cgroup_parent.strip("/")  # <pods>/<container>/enclave
        assert long_cgroup.name == "enclave"
        cri.stop_container(long, timeout=10)
        assert cri.container_status(long).exit_code == 3
        cri.wait_for_log_line(long_log, "got-term")
        leftovers = subprocess.run(["pgrep", "-f", "got-term"], capture_output=True, text=True, check=False)
        assert leftovers.stdout == ""

        # an ordinary image in a sealpod pod: unpacked by the snapshotter like overlayfs, run by runc unchanged
        plain = push_busybox_image(registry.host, "sealpod-cri/plain", tmp_path / "images")
        cri.pull_image(plain, pod_id=pod_b)
        ordinary = cri.create_container(
            pod_b, "ordinary", plain, command=["/bin/sh", "-c", "echo plain-in-sealpod-pod"]
        )
        cri.start_container(ordinary)
        ordinary_status = cri.wait_for_exit(ordinary, timeout=60)
        assert ordinary_status.exit_code == 0
        ordinary_log = [line.text for line in CriClient.read_log(Path(ordinary_status.log_path))]
        assert ordinary_log == ["plain-in-sealpod-pod"]  # no enclave notes: runc ran it

        # the tenant re-registers another enclave build: this node's enclave now gets nothing from the KBS, and a
        # new container of the same pod spec stops before anything runs, the reason in its log. (A second tag of the
        # same image would not do for a refusal here: CRI resolves images by config digest and names the container's
        # image by the first reference it holds, so the enclave verifies that name.)
        register_enclave(server.url, bytes(32))
        refused = cri.create_container(pod_a, "unregistered", image)
        cri.start_container(refused)
        refused_status = cri.wait_for_exit(refused, timeout=60)
        refused_log = "\n".join(line.text for line in CriClient.read_log(Path(refused_status.log_path)))
        assert refused_status.exit_code == 125, refused_log
        assert "PolicyDeny" in refused_log
        assert "user=" not in refused_log  # the workload never started

        # containerd holds the manifest and the (plaintext by format) config, no layer; the snapshots hold no file
        for root in (containerd_root, snapshots):
            assert _files_holding(root, CANARY_FILE) == []
        blobs = {p.name for p in (containerd_root / "io.containerd.content.v1.content" / "blobs" / "sha256").iterdir()}
        manifest = json.loads(
            subprocess.run(
                [SEALPOD, "inspect", image, "--raw", "--tls-verify=false"], capture_output=True, check=True
            ).stdout
        )
        layers = {layer["digest"].removeprefix("sha256:") for layer in manifest["layers"]}
        assert all(layer["mediaType"].endswith("+encrypted") for layer in manifest["layers"])
        assert manifest["config"]["digest"].removeprefix("sha256:") in blobs
        assert not layers & blobs  # containerd holds the manifest and config, never an encrypted layer

        for container in (app, slow, long, ordinary, refused):
            cri.stop_container(container)
            cri.remove_container(container)
        assert not long_cgroup.parent.exists()  # sealpod-runtime delete removed the container's cgroups
        for pod in (pod_a, pod_b):
            cri.stop_pod(pod)
            cri.remove_pod(pod)
        assert cri.list_pods() == []
