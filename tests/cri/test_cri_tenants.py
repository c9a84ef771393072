"""Two tenants on one node through CRI: each with its own KBS, keys, policies and signed encrypted image; tenant B's
pod names its KBS in CoCo init-data (the pod annotation), tenant A's uses the node's. Both pods run at once and
each workload gets its own tenant's secrets over the CDH API and a sealed pod variable; a pod pointed by the host at
the other tenant's image, or at the other tenant's KBS, is refused; no plaintext secret reaches the host."""

from __future__ import annotations

import base64
import gzip
import hashlib
from collections.abc import Callable
from pathlib import Path

from sealpod.kbs.client.admin import AdminClient
from sealpod.oci.localregistry import LocalRegistry
from tests.cri.containerd import CriClient
from tests.cri.proto import cri_subset_pb2 as pb
from tests.cri.test_cri_sealpod import _containerd, _files_holding, _runtime_wrapper, snapshotter  # noqa: F401
from tests.e2e.test_run import _deploy
from tests.e2e.test_secrets import _seal, _secret_volume
from tests.kbs.conftest import KbsProcess

INIT_DATA_ANNOTATION = "io.katacontainers.config.runtime.cc_init_data"
SCRIPT = (
    "echo api=$(busybox wget -q -O - http://127.0.0.1:8006/cdh/resource/default/tenant/secret | busybox sha256sum);"
    ' echo env=$(echo -n "$SEALED_VAR" | busybox sha256sum);'
    " echo file=$(busybox cat /etc/tenant/password | busybox sha256sum); busybox sleep 2; echo done"
)


def _tenant(tmp_path: Path, registry: LocalRegistry, server: KbsProcess, node: dict[str, str], who: str) -> str:
    """Tenant ``who``'s image (its own repository and keys) and secrets in its own KBS; returns the image."""
    home = tmp_path / who
    home.mkdir()
    image = _deploy(
        home,
        registry,
        server,
        node,
        # each tenant's own config: CRI names a container's image by the first reference of its config digest
        config={"Entrypoint": ["/bin/sh", "-c"], "Cmd": [SCRIPT], "Env": [f"TENANT={who}"]},
        run_policy={"allow_env": ["SEALED_VAR"]},
        repository=f"tenant-{who}/app",
    )
    with AdminClient(server.url) as admin:
        admin.put_resource("default/tenant/secret", f"api-secret-of-{who}-4e1f".encode())
        admin.put_resource("default/tenant/sealed", f"sealed-secret-of-{who}-8a2c".encode())
    return image


def _sealed_for(home: Path, server: KbsProcess, node: dict[str, str]) -> str:
    sealed = _seal(home, "kbs:///default/tenant/sealed", node)
    with AdminClient(server.url) as admin:
        admin.put_resource("default/sealing/pub", (home / "sealing.pub").read_bytes())
    return sealed


def _init_data(kbs_url: str) -> str:
    text = f'version = "0.1.0"\nalgorithm = "sha256"\n[data]\n"cdh.toml" = \'\'\'\n[kbc]\nurl = "{kbs_url}"\n\'\'\'\n'
    return base64.b64encode(gzip.compress(text.encode())).decode()


def _secret_mount(path: Path) -> pb.Mount:
    """A read-only volume at /etc/tenant, as the kubelet gives a Secret volume."""
    return pb.Mount(container_path="/etc/tenant", host_path=str(path), readonly=True)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_two_tenants_run_pods_on_one_node_each_with_its_own_kbs_and_secrets(
    tmp_path: Path,
    registry: LocalRegistry,
    kbs_factory: Callable[..., KbsProcess],
    node: dict[str, str],
    snapshotter: tuple[Path, Path, Path],  # noqa: F811 - the fixture
) -> None:
    kbs_a = kbs_factory(name="kbs-a", storage=f"sqlite://{tmp_path / 'a.sqlite'}")
    kbs_b = kbs_factory(name="kbs-b", storage=f"sqlite://{tmp_path / 'b.sqlite'}")
    image_a = _tenant(tmp_path, registry, kbs_a, node, "a")
    image_b = _tenant(tmp_path, registry, kbs_b, node, "b")
    sealed_a = _sealed_for(tmp_path / "a", kbs_a, node)
    sealed_b = _sealed_for(tmp_path / "b", kbs_b, node)
    socket, snapshots, containerd_root = snapshotter
    wrapper = _runtime_wrapper(tmp_path, kbs_a.url, node["SEALPOD_STATE_DIR"])  # the node's KBS: tenant A's
    with _containerd(tmp_path, registry, socket, wrapper) as ctd:
        cri: CriClient = ctd.client()
        pod_a = cri.run_pod("tenant-a", runtime_handler="sealpod")
        pod_b = cri.run_pod(
            "tenant-b", runtime_handler="sealpod", annotations={INIT_DATA_ANNOTATION: _init_data(kbs_b.url)}
        )
        for image, pod in ((image_a, pod_a), (image_b, pod_b)):
            cri.pull_image(image, pod_id=pod)
        # each pod's Secret volume holds a sealed secret (a file laid out as the kubelet lays one out)
        volumes = {
            who: _secret_volume(tmp_path / who / "secret", {"password": s})
            for who, s in (("a", sealed_a), ("b", sealed_b))
        }
        app_a = cri.create_container(
            pod_a, "app", image_a, env={"SEALED_VAR": sealed_a}, mounts=[_secret_mount(volumes["a"])]
        )
        app_b = cri.create_container(
            pod_b, "app", image_b, env={"SEALED_VAR": sealed_b}, mounts=[_secret_mount(volumes["b"])]
        )
        cri.start_container(app_a)
        cri.start_container(app_b)
        log_a = Path(cri.container_status(app_a).log_path)
        cri.wait_for_log_line(log_a, "api=", timeout=90)
        cri.wait_for_log_line(Path(cri.container_status(app_b).log_path), "api=", timeout=90)
        statuses = {who: cri.wait_for_exit(app, timeout=60) for who, app in (("a", app_a), ("b", app_b))}
        for who, status in statuses.items():
            lines = [line.text for line in CriClient.read_log(Path(status.log_path))]
            assert status.exit_code == 0, lines
            assert f"api={_sha(f'api-secret-of-{who}-4e1f')} -" in lines, lines
            assert f"env={_sha(f'sealed-secret-of-{who}-8a2c')} -" in lines, lines
            assert f"file={_sha(f'sealed-secret-of-{who}-8a2c')} -" in lines, lines
            assert (volumes[who] / "password").read_text().startswith("sealed.")  # the host's copy stays sealed

        # the host points tenant A's pod at tenant B's image: A's signature policy refuses B's signer
        crossed = cri.create_container(pod_a, "crossed", image_b, env={"SEALED_VAR": sealed_b})
        cri.start_container(crossed)
        crossed_status = cri.wait_for_exit(crossed, timeout=60)
        crossed_log = "\n".join(line.text for line in CriClient.read_log(Path(crossed_status.log_path)))
        assert crossed_status.exit_code == 125, crossed_log
        assert "api=" not in crossed_log
        # the host points a pod of tenant A's image at tenant B's KBS (init-data naming it): B holds nothing of A's
        pod_c = cri.run_pod(
            "tenant-a-moved", runtime_handler="sealpod", annotations={INIT_DATA_ANNOTATION: _init_data(kbs_b.url)}
        )
        moved = cri.create_container(pod_c, "moved", image_a, env={"SEALED_VAR": sealed_a})
        cri.start_container(moved)
        moved_status = cri.wait_for_exit(moved, timeout=60)
        moved_log = "\n".join(line.text for line in CriClient.read_log(Path(moved_status.log_path)))
        assert moved_status.exit_code == 125, moved_log
        assert "init-data chooses the KBS" in moved_log
        assert "api=" not in moved_log

        # nothing of either tenant's plaintext secrets on the host: containerd's root and state, the snapshots, the
        # node's state, the pod logs
        for who in ("a", "b"):
            for needle in (f"api-secret-of-{who}-4e1f", f"sealed-secret-of-{who}-8a2c"):
                for root in (containerd_root, snapshots, Path(node["SEALPOD_STATE_DIR"]), ctd.pod_logs, ctd.state):
                    assert _files_holding(root, needle.encode()) == [], (root, needle)
