"""An ordinary (unencrypted) busybox pod through CRI under plain runc, driven the way kubelet drives containerd."""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import signal
from pathlib import Path

import pytest

from sealpod.oci.localregistry import LocalRegistry
from tests.conftest import REGISTRY_PASSWORD, REGISTRY_USER
from tests.cri.containerd import (
    RUNC,
    Containerd,
    CriClient,
    CriError,
    Registry,
    RuntimeHandler,
    push_busybox_image,
    push_sandbox_image,
)
from tests.cri.proto import cri_subset_pb2 as pb

# What containerd would create on the host if it were not confined to its own mount namespace.
HOST_PATHS = [Path("/run/containerd"), Path("/run/netns"), Path("/var/lib/cni"), Path("/opt/containerd")]


@pytest.fixture
def images(tmp_path: Path, registry: LocalRegistry) -> tuple[str, str]:
    """The sandbox (pause) image and a busybox image, pushed to the local registry."""
    workdir = tmp_path / "images"
    sandbox = push_sandbox_image(registry.host, workdir)
    busybox = push_busybox_image(registry.host, "sealpod-cri/busybox", workdir, tag=secrets.token_hex(4))
    return sandbox, busybox


def _host_traces(tmp_path: Path, ids: list[str]) -> list[str]:
    """Host mounts under ``tmp_path``, and paths in HOST_PATHS naming one of ``ids`` (pods, containers): other
    containerds may run on this machine at the same time, so only what names our own objects counts."""
    traces = [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if str(tmp_path) in line]
    for top in HOST_PATHS:
        for dirpath, dirnames, filenames in os.walk(top):
            traces += [f"{dirpath}/{name}" for name in dirnames + filenames if any(i in name for i in ids)]
    return traces


def _assert_torn_down(ctd: Containerd, namespace: str, tmp_path: Path, ids: list[str]) -> None:
    assert ctd.process is None
    assert Containerd.leftover_processes(namespace) == []
    assert not Path(f"/sys/class/net/{ctd.bridge}").exists()
    assert ctd.cgroup_dirs() == []
    assert _host_traces(tmp_path, ids) == []


def test_busybox_pod_through_cri_under_runc(tmp_path: Path, registry: LocalRegistry, images: tuple[str, str]) -> None:
    sandbox_image, image = images
    ctd = Containerd(tmp_path / "containerd", sandbox_image=sandbox_image, registries=[registry.host])
    with ctd:
        assert ctd.mount_namespace is not None
        namespace = ctd.mount_namespace
        cri = ctd.client()
        version = cri.version()
        assert (version.runtime_name, version.runtime_api_version) == ("containerd", "v1")
        assert version.runtime_version.startswith("1.6.")

        pod = cri.run_pod("busybox", namespace="cri-test")
        pod_status = cri.pod_status(pod)
        assert pod_status.state == pb.SANDBOX_READY
        assert ctd.subnet is not None
        assert ipaddress.ip_address(pod_status.network.ip) in ctd.subnet  # the pod is on our CNI bridge
        assert Path(f"/sys/class/net/{ctd.bridge}").exists()

        image_ref = cri.pull_image(image, pod_id=pod)
        assert image_ref.startswith("sha256:")
        pulled = cri.image_status(image)
        assert pulled is not None
        assert pulled.id == image_ref
        assert image in pulled.repo_tags

        marker = f"hello through CRI {secrets.token_hex(8)}"
        echo = cri.create_container(
            pod,
            "echo",
            image,
            command=["/bin/sh", "-c", 'echo "$GREETING"; echo on-stderr >&2'],
            env={"GREETING": marker},
        )
        assert cri.container_status(echo).state == pb.CONTAINER_CREATED
        cri.start_container(echo)
        status = cri.wait_for_exit(echo)
        assert (status.exit_code, status.reason) == (0, "Completed")
        assert status.started_at > 0  # set, not ordered: containerd stamps exit events on its own clock
        assert status.finished_at > 0
        log = Path(status.log_path)
        assert log == Path(cri.pod_configs[pod].log_directory) / "echo" / "0.log"
        line = cri.wait_for_log_line(log, marker)
        assert (line.stream, line.text) == ("stdout", marker)
        # stdout and stderr are separate pipes: their relative order is not fixed.
        assert sorted((entry.stream, entry.text) for entry in CriClient.read_log(log)) == [
            ("stderr", "on-stderr"),
            ("stdout", marker),
        ]
        assert f" stdout F {marker}\n" in log.read_text()

        # An exit code other than the protobuf default, so the 0 above is a real one.
        failing = cri.create_container(pod, "fail", image, command=["/bin/sh", "-c", "exit 7"])
        cri.start_container(failing)
        status = cri.wait_for_exit(failing)
        assert (status.exit_code, status.reason) == (7, "Error")

        assert {c.id for c in cri.list_containers(pod)} == {echo, failing}
        # runc's state, the shims' sockets, the netns and the CNI cache all live in containerd's private mounts.
        assert ctd.process is not None
        assert Path(f"/proc/{ctd.process.pid}/root/run/containerd/runc/k8s.io/{pod}").is_dir()
        assert _host_traces(tmp_path, [pod, echo, failing]) == []
        for container in (echo, failing):
            cri.stop_container(container)
            cri.remove_container(container)
        cri.stop_pod(pod)
        assert cri.pod_status(pod).state == pb.SANDBOX_NOTREADY
        cri.remove_pod(pod)
        assert cri.list_containers() == []
        assert cri.list_pods() == []
        cri.remove_image(image)
        assert cri.image_status(image) is None
    _assert_torn_down(ctd, namespace, tmp_path, [pod, echo, failing])


def test_teardown_after_containerd_dies_with_a_running_pod(tmp_path: Path, images: tuple[str, str]) -> None:
    """Shims outlive containerd by design; stopping the harness must still kill them and their containers."""
    sandbox_image, image = images
    registry_host = image.split("/", 1)[0]
    ctd = Containerd(tmp_path / "containerd", sandbox_image=sandbox_image, registries=[registry_host])
    with ctd:
        assert ctd.mount_namespace is not None
        assert ctd.process is not None
        namespace = ctd.mount_namespace
        cri = ctd.client()
        pod = cri.run_pod("sleeper")
        cri.pull_image(image)
        sleeper = cri.create_container(pod, "sleep", image, command=["/bin/sleep", "3600"])
        cri.start_container(sleeper)
        assert cri.container_status(sleeper).state == pb.CONTAINER_RUNNING
        sleep_pid = cri.container_pid(sleeper)
        assert Path(f"/proc/{sleep_pid}/cmdline").read_bytes() == b"/bin/sleep\x003600\x00"
        os.kill(ctd.process.pid, signal.SIGKILL)
        ctd.process.wait()
        # containerd is gone; its shims and the container are not, and teardown must find them.
        assert sleep_pid in Containerd.leftover_processes(namespace)
    _assert_torn_down(ctd, namespace, tmp_path, [pod, sleeper])


def test_registry_settings(
    tmp_path: Path, registry: LocalRegistry, auth_registry: LocalRegistry, images: tuple[str, str]
) -> None:
    """hosts.toml routes a made-up registry name to the local registry; configured and per-pull credentials."""
    sandbox_image, image = images
    repository_tag = image.split("/", 1)[1]
    private = push_busybox_image(
        auth_registry.host,
        "private/busybox",
        tmp_path / "images",
        tag="v1",
        credentials=(REGISTRY_USER, REGISTRY_PASSWORD),
    )
    registries: list[Registry | str] = [
        registry.host,
        Registry("registry.sealpod.test", server=f"http://{registry.host}"),
        Registry(auth_registry.host, auth=(REGISTRY_USER, REGISTRY_PASSWORD)),
    ]
    with Containerd(tmp_path / "containerd", sandbox_image=sandbox_image, registries=registries) as ctd:
        cri = ctd.client()
        aliased = f"registry.sealpod.test/{repository_tag}"
        assert cri.pull_image(aliased) == cri.pull_image(image)
        with pytest.raises(CriError, match="401 Unauthorized"):
            cri.pull_image(private, auth=(REGISTRY_USER, "wrong"))  # a pull's own credentials come first
        assert cri.image_status(private) is None
        pulled = cri.pull_image(private)  # the configured ones
        image_status = cri.image_status(private)
        assert image_status is not None
        assert image_status.id == pulled


WRAPPER = """#!/bin/sh
# Records every call and each created bundle's config.json, then runs the real runc.
echo "$*" >> {record}/calls
previous=
for arg in "$@"; do
    if [ "$previous" = --bundle ]; then cp "$arg/config.json" "{record}/config.$$.json"; fi
    previous=$arg
done
exec {runc} "$@"
"""


def test_extra_runtime_handler_gets_pod_annotations(tmp_path: Path, images: tuple[str, str]) -> None:
    """A RuntimeHandler's BinaryName replaces runc for the pods that ask for it, with the pod annotations it lets
    through in every config.json (what a confidential runtime reads)."""
    sandbox_image, image = images
    record = tmp_path / "record"
    record.mkdir()
    wrapper = tmp_path / "runc-wrapper"
    wrapper.write_text(WRAPPER.format(record=record, runc=RUNC))
    wrapper.chmod(0o755)
    handler = RuntimeHandler(binary_name=str(wrapper), pod_annotations=("sealpod.test/*",))
    registry_host = image.split("/", 1)[0]
    marker = secrets.token_hex(8)
    with Containerd(
        tmp_path / "containerd", sandbox_image=sandbox_image, registries=[registry_host], runtimes={"wrapped": handler}
    ) as ctd:
        cri = ctd.client()
        plain = cri.run_pod("plain")
        assert not (record / "calls").exists()  # the default handler is still runc itself
        annotations = {"sealpod.test/marker": marker, "other.test/hidden": "no"}
        pod = cri.run_pod("wrapped", runtime_handler="wrapped", annotations=annotations)
        assert cri.pod_status(pod).runtime_handler == "wrapped"
        cri.pull_image(image)
        container = cri.create_container(pod, "hello", image, command=["/bin/echo", marker])
        cri.start_container(container)
        status = cri.wait_for_exit(container)
        assert status.exit_code == 0
        assert cri.wait_for_log_line(Path(status.log_path), marker).text == marker
        for pod_id in (pod, plain):
            cri.stop_pod(pod_id)
            cri.remove_pod(pod_id)
    configs = [json.loads(path.read_text()) for path in sorted(record.glob("config.*.json"))]
    kinds = sorted(config["annotations"]["io.kubernetes.cri.container-type"] for config in configs)
    assert kinds == ["container", "sandbox"]
    for config in configs:
        assert config["annotations"]["sealpod.test/marker"] == marker
        assert "other.test/hidden" not in config["annotations"]
    calls = (record / "calls").read_text().splitlines()
    assert sum(" create --bundle " in call for call in calls) == 2
