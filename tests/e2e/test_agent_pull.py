"""The enclave's secure pull end to end: a tenant encrypts (KEK in a CoCo packet), signs and pushes an image and
registers the KEK, the cosign key, the signature policy and the enclave's reference values with a real KBS; the
agent, attesting with the simulated SGX platform, gets all of it from the KBS and unpacks the image."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from sealpod.agent.pull import AgentSettings, secure_pull
from sealpod.errors import SealpodError
from sealpod.kbs.client import KbsClient, KbsClientError
from sealpod.oci.localregistry import LocalRegistry
from sealpod.tee.sim import SimPlatform
from tests.conftest import need, run_tool
from tests.e2e.tenant import SECRET, tenant
from tests.kbs.conftest import MRE, MRS, KbsProcess

SEALPOD = str(Path(sys.executable).with_name("sealpod"))


def test_agent_pulls_a_signed_encrypted_image_with_everything_from_the_kbs(
    registry: LocalRegistry,
    kbs_factory: Callable[..., KbsProcess],
    sim: SimPlatform,
    tmp_path: Path,
) -> None:
    server = kbs_factory()
    image = tenant(tmp_path, registry, server.url)
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
