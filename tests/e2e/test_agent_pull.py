"""The enclave's secure pull end to end: a tenant encrypts (KEK in a CoCo packet), signs and pushes an image and
registers the KEK, the cosign key, the signature policy and the enclave's reference values with a real KBS; the
agent, attesting with the simulated SGX platform, gets all of it from the KBS and unpacks the image."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from sealpod.agent.pull import AgentSettings, secure_pull
from sealpod.errors import SealpodError
from sealpod.kbs.admin_client import AdminClient
from sealpod.kbs.client import KbsClient, KbsClientError
from sealpod.oci.localregistry import LocalRegistry
from sealpod.tee.sim import SimPlatform
from tests.conftest import need, run_tool
from tests.helpers import E, image_from_tars, make_tar
from tests.kbs.conftest import MRE, MRS, KbsProcess, register_enclave

SEALPOD = str(Path(sys.executable).with_name("sealpod"))
SECRET = b"only the enclave reads this\n"


def _tenant(tmp_path: Path, registry: LocalRegistry, kbs_url: str) -> str:
    """Encrypt, sign, push, and register everything with the KBS; returns the image reference."""
    env = {**os.environ, "COSIGN_PASSWORD": "pw"}
    image_from_tars(
        tmp_path / "plain",
        "v1",
        [
            make_tar([E("app", "dir"), E("app/secret.txt", data=SECRET)]),
            make_tar([E("app/run.sh", data=b"#!/bin/sh\n", mode=0o755)]),
        ],
    )
    keks = tmp_path / "keks.json"
    provider_config = tmp_path / "ocicrypt.json"
    provider_config.write_text(
        json.dumps(
            {
                "key-providers": {
                    "attestation-agent": {"cmd": {"path": SEALPOD, "args": ["keyprovider", "--keys", str(keks)]}}
                }
            }
        )
    )
    env["OCICRYPT_KEYPROVIDER_CONFIG"] = str(provider_config)
    image = f"{registry.host}/tenant/app:v1"

    def cli(*args: str | Path) -> None:
        proc = subprocess.run([SEALPOD, *map(str, args)], capture_output=True, text=True, env=env, check=False)
        assert proc.returncode == 0, proc.stderr

    cli(
        "image",
        "encrypt",
        f"oci:{tmp_path / 'plain'}:v1",
        image,
        "--dest-tls-verify=false",
        "--recipient",
        "provider:attestation-agent:keyid=kbs:///default/image-kek/app",
    )
    cli("image", "keygen", "--output-key-prefix", tmp_path / "cosign")
    cli("image", "sign", image, "--key", tmp_path / "cosign.key", "--tls-verify=false")
    policy = {
        "default": [{"type": "reject"}],
        "transports": {
            "docker": {registry.host: [{"type": "sigstoreSigned", "keyPath": "kbs:///default/cosign-key/1"}]}
        },
    }
    with AdminClient(kbs_url) as admin:
        admin.put_resource(
            "default/image-kek/app", base64.b64decode(json.loads(keks.read_text())["default/image-kek/app"])
        )
        admin.put_resource("default/cosign-key/1", (tmp_path / "cosign.pub").read_bytes())
        admin.put_resource("default/security-policy/test", json.dumps(policy).encode())
    register_enclave(kbs_url)
    return image


def test_agent_pulls_a_signed_encrypted_image_with_everything_from_the_kbs(
    registry: LocalRegistry,
    kbs_factory: Callable[..., KbsProcess],
    sim: SimPlatform,
    tmp_path: Path,
) -> None:
    server = kbs_factory()
    image = _tenant(tmp_path, registry, server.url)
    settings = AgentSettings(tls_verify=False)
    with KbsClient(server.url, sim.attester(mr_enclave=MRE, mr_signer=MRS)) as client:
        result = secure_pull(image, tmp_path / "rootfs", client, settings)
    assert (tmp_path / "rootfs/app/secret.txt").read_bytes() == SECRET
    assert (tmp_path / "rootfs/app/run.sh").stat().st_mode & 0o111
    assert all(d.media_type.endswith("+encrypted") for d in result.image.manifest.layers)

    # the same image under a tag nobody signed is refused before any layer is fetched
    run_tool(
        need("skopeo"),
        "copy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        f"docker://{image}",
        f"docker://{image.replace(':v1', ':unsigned')}",
        "--remove-signatures",
    )
    with (
        KbsClient(server.url, sim.attester(mr_enclave=MRE, mr_signer=MRS)) as client,
        pytest.raises(SealpodError, match=r"is not accepted|no sigstoreSigned"),
    ):
        secure_pull(image.replace(":v1", ":unsigned"), tmp_path / "rootfs2", client, settings)
    assert not (tmp_path / "rootfs2").exists()

    # an enclave the tenant did not register gets nothing: not the policy, not the keys
    stranger = KbsClient(server.url, sim.attester(mr_enclave=b"\x01" * 32, mr_signer=MRS))
    with stranger, pytest.raises(KbsClientError) as denied:
        secure_pull(image, tmp_path / "rootfs3", stranger, settings)
    assert denied.value.variant == "PolicyDeny"
    assert not (tmp_path / "rootfs3").exists()
