"""The enclave's secure pull end to end: a tenant encrypts (KEK in a CoCo packet), signs and pushes an image and
registers the KEK, the cosign key, the signature policy and the enclave's reference values with a real KBS; the
agent, attesting with the simulated SGX platform, gets all of it from the KBS and unpacks the image."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from sealpod.agent.run import PlainDirectory, prepare_run
from sealpod.boundary.request import BootRequest
from sealpod.errors import SealpodError
from sealpod.kbs.client.rcar import KbsClientError
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
    tenant_enclave = sim.attester(mr_enclave=MRE, mr_signer=MRS)

    def request(image: str) -> BootRequest:
        return BootRequest(image, server.url, registry_tls_verify=False)

    prepared = prepare_run(tenant_enclave, request(image), lambda: PlainDirectory(tmp_path / "rootfs"))
    prepared.close()
    result = prepared.result
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
    with pytest.raises(SealpodError, match=r"is not accepted|no sigstoreSigned"):
        prepare_run(
            tenant_enclave, request(image.replace(":v1", ":unsigned")), lambda: PlainDirectory(tmp_path / "rootfs2")
        )
    assert not (tmp_path / "rootfs2").exists()

    # an enclave the tenant did not register gets nothing: not the policy, not the keys
    stranger = sim.attester(mr_enclave=b"\x01" * 32, mr_signer=MRS)
    with pytest.raises(KbsClientError) as denied:
        prepare_run(stranger, request(image), lambda: PlainDirectory(tmp_path / "rootfs3"))
    assert denied.value.variant == "PolicyDeny"
    assert not (tmp_path / "rootfs3").exists()
