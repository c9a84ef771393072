"""``sealpod node containerd-config``: merges the sealpod handler, the proxy plugin and the CRI settings into a node's
containerd config without losing what was there, says when nothing changed, and refuses configs it cannot merge."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

from sealpod.runtime.containerd_config import CRI, HANDLER

SEALPOD = str(Path(sys.executable).with_name("sealpod"))
EXISTING = """version = 2
root = "/var/lib/containerd"
[plugins."io.containerd.grpc.v1.cri"]
sandbox_image = "registry.k8s.io/pause:3.6"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
runtime_type = "io.containerd.runc.v2"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
SystemdCgroup = true
"""


def _configure(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SEALPOD, "node", "containerd-config", "--config", str(config), "--runtime-binary", "/x/sealpod-runtime"],
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_node_config_is_merged_into_containerds_and_the_rest_is_kept(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(EXISTING)

    first = _configure(config)
    merged = tomllib.loads(config.read_text())
    second = _configure(config)

    assert first.returncode == 0, first.stderr
    assert "restart containerd" in first.stderr
    assert second.returncode == 3
    assert "already set up" in second.stderr
    cri = merged["plugins"][CRI]
    assert cri["sandbox_image"] == "registry.k8s.io/pause:3.6"
    assert cri["containerd"]["runtimes"]["runc"]["options"] == {"SystemdCgroup": True}
    assert cri["containerd"]["runtimes"][HANDLER]["options"] == {"BinaryName": "/x/sealpod-runtime"}
    assert cri["containerd"]["snapshotter"] == "sealpod"
    assert cri["containerd"]["disable_snapshot_annotations"] is False
    assert merged["proxy_plugins"]["sealpod"]["type"] == "snapshot"
    assert merged["root"] == "/var/lib/containerd"
    assert (tmp_path / "config.toml.orig").read_text() == EXISTING


def test_a_config_it_cannot_merge_is_refused_untouched(tmp_path: Path) -> None:
    for text, message in (("version = 1\n", "is version 1"), ("[plugins\n", "is not valid TOML")):
        config = tmp_path / "config.toml"
        config.write_text(text)
        proc = _configure(config)
        assert proc.returncode == 1
        assert message in proc.stderr
        assert config.read_text() == text


def test_the_runtime_class_names_the_handler_the_node_config_adds() -> None:
    deploy = Path(__file__).parents[2] / "deploy" / "kubernetes"
    (runtime_class,) = yaml.safe_load_all((deploy / "runtimeclass.yaml").read_text())
    assert runtime_class["kind"] == "RuntimeClass"
    assert runtime_class["handler"] == HANDLER
    kinds = [doc["kind"] for doc in yaml.safe_load_all((deploy / "kbs.yaml").read_text())]
    assert kinds.count("Deployment") == 1
    assert "StatefulSet" in kinds  # PostgreSQL, which the KBS replicas share
