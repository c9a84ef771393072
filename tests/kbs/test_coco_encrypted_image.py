"""Images CoCo's own key provider encrypted (guest-components' coco_keyprovider behind skopeo 1.18) pulled by sealpod:
with the KEK from the KBS after attestation, as the enclave does, and from an offline KEK store
(tests/data/ocicrypt/coco_keyprovider/PROVENANCE.md)."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from sealpod.agent.pull import AgentSettings, verify_image
from sealpod.errors import CryptoError
from sealpod.kbs.client.admin import AdminClient
from sealpod.kbs.client.rcar import KbsClient
from sealpod.tee.sample import SampleAttester
from tests.kbs.conftest import SEALPOD, KbsProcess

DATA = Path(__file__).parent.parent / "data" / "ocicrypt" / "coco_keyprovider"
PACKET = "org.opencontainers.image.enc.keys.provider.attestation-agent"
ACCEPT_ANYTHING = b'{"default": [{"type": "insecureAcceptAnything"}]}'
EXPECTED = {"app/hello.txt": b"hello from layer one\n", "etc/interop.conf": b"name=coco-interop\n"}


def layout(tmp_path: Path, name: str) -> str:
    copy = tmp_path / name
    shutil.copytree(DATA / name, copy)
    return f"oci:{copy}:v1"


def assert_unpacked(rootfs: Path) -> None:
    assert {name: (rootfs / name).read_bytes() for name in EXPECTED} == EXPECTED


@pytest.mark.parametrize("name", ["gcm-layout", "ctr-layout"])
def test_the_enclave_pull_opens_cocos_packets_with_the_kbs_kek(
    kbs_factory: Callable[..., KbsProcess], tmp_path: Path, name: str
) -> None:
    server = kbs_factory(allow_sample=True)
    with AdminClient(server.url) as admin:
        admin.put_resource("default/coco-kek/1", (DATA / "kek.bin").read_bytes())
        admin.put_resource("default/security-policy/test", ACCEPT_ANYTHING)
        admin.set_resource_policy("package policy\ndefault allow = true\n")
    with KbsClient(server.url, SampleAttester()) as client, verify_image(layout(tmp_path, name), client) as image:
        image.fetch_into(tmp_path / "rootfs")
    assert_unpacked(tmp_path / "rootfs")


def test_a_wrong_kbs_kek_is_refused_and_nothing_is_left(kbs_factory: Callable[..., KbsProcess], tmp_path: Path) -> None:
    server = kbs_factory(allow_sample=True)
    with AdminClient(server.url) as admin:
        admin.put_resource("default/coco-kek/1", bytes(32))
        admin.put_resource("default/security-policy/test", ACCEPT_ANYTHING)
        admin.set_resource_policy("package policy\ndefault allow = true\n")
    with (
        KbsClient(server.url, SampleAttester()) as client,
        verify_image(layout(tmp_path, "gcm-layout"), client, AgentSettings(credentials_uri=None)) as image,
        pytest.raises(CryptoError, match=r"kbs:///default/coco-kek/1") as refused,
    ):
        image.fetch_into(tmp_path / "rootfs")
    assert "does not open this layer's key" in str(refused.value)
    assert not (tmp_path / "rootfs").exists()


def test_sealpod_pull_opens_cocos_image_with_a_kek_store(tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    key = f"kek-store:{DATA / 'kek-store.json'}"
    done = subprocess.run(
        [
            SEALPOD,
            "pull",
            layout(tmp_path, "gcm-layout"),
            "--rootfs",
            str(rootfs),
            "--insecure-policy",
            "--decryption-key",
            key,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert_unpacked(rootfs)


def packets(manifest: dict[str, object]) -> list[dict[str, str]]:
    layers = manifest["layers"]
    assert isinstance(layers, list)
    return [json.loads(base64.b64decode(layer["annotations"][PACKET])) for layer in layers]


def test_sealpods_packets_have_cocos_layout() -> None:
    index = json.loads((DATA / "gcm-layout" / "index.json").read_text())
    digest = index["manifests"][0]["digest"].removeprefix("sha256:")
    coco = json.loads((DATA / "gcm-layout" / "blobs" / "sha256" / digest).read_text())
    ours = json.loads((DATA / "sealpod-encrypted-manifest.json").read_text())
    for theirs, mine in zip(packets(coco), packets(ours), strict=True):
        assert set(theirs) == set(mine) == {"kid", "wrapped_data", "iv", "wrap_type"}
        assert theirs["wrap_type"] == mine["wrap_type"] == "A256GCM"
        assert theirs["kid"].startswith("kbs:///")
        assert mine["kid"].startswith("kbs:///")
        assert len(base64.b64decode(theirs["iv"])) == len(base64.b64decode(mine["iv"])) == 12
    assert [layer["mediaType"] for layer in coco["layers"]] == [layer["mediaType"] for layer in ours["layers"]]
