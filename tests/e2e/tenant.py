"""The tenant's side of the end-to-end tests: encrypt (KEK in a CoCo packet), sign, push (to a registry or an OCI
layout), register with the KBS."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

from sealpod.kbs.client.admin import AdminClient
from sealpod.oci.localregistry import LocalRegistry
from tests.helpers import E, image_from_tars, make_tar
from tests.kbs.conftest import MRE, MRS, register_enclave

SEALPOD = str(Path(sys.executable).with_name("sealpod"))
SECRET = b"only the enclave reads this\n"
LAYOUT_IDENTITY = "localhost/tenant/app:v1"


def tenant(
    tmp_path: Path,
    registry: LocalRegistry | None,
    kbs_url: str,
    *,
    layers: list[bytes] | None = None,
    config: dict[str, object] | None = None,
    identity: tuple[bytes, bytes, int, int] = (MRE, MRS, 0, 0),
    run_policy: dict[str, object] | None = None,
    repository: str = "tenant/app",
) -> str:
    """Encrypt, sign, push, and register everything with the KBS; returns the image reference.

    ``repository`` is where in the registry it goes (two tenants: two repositories). Without a registry the image
    is ``oci:TMP/images:v1``, signed in the layout claiming :data:`LAYOUT_IDENTITY`, under a policy scoped to that
    directory.
    """
    env = {**os.environ, "COSIGN_PASSWORD": "pw"}
    image_from_tars(
        tmp_path / "plain",
        "v1",
        layers
        or [
            make_tar([E("app", "dir"), E("app/secret.txt", data=SECRET)]),
            make_tar([E("app/run.sh", data=b"#!/bin/sh\n", mode=0o755)]),
        ],
        config=config,
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
    image = f"{registry.host}/{repository}:v1" if registry else f"oci:{tmp_path / 'images'}:v1"
    requirement: dict[str, object] = {"type": "sigstoreSigned", "keyPath": "kbs:///default/cosign-key/1"}
    if registry:
        transports = {"docker": {registry.host: [requirement]}}
        identity_args: list[str] = []
    else:
        requirement["signedIdentity"] = {"type": "exactReference", "dockerReference": LAYOUT_IDENTITY}
        transports = {"oci": {str(tmp_path / "images"): [requirement]}}
        identity_args = ["--identity", LAYOUT_IDENTITY]

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
    cli("image", "sign", image, "--key", tmp_path / "cosign.key", "--tls-verify=false", *identity_args)
    policy = {"default": [{"type": "reject"}], "transports": transports}
    with AdminClient(kbs_url) as admin:
        admin.put_resource(
            "default/image-kek/app", base64.b64decode(json.loads(keks.read_text())["default/image-kek/app"])
        )
        admin.put_resource("default/cosign-key/1", (tmp_path / "cosign.pub").read_bytes())
        admin.put_resource("default/security-policy/test", json.dumps(policy).encode())
        if run_policy is not None:
            admin.put_resource("default/run-policy/test", json.dumps(run_policy).encode())
    register_enclave(kbs_url, *identity)
    return image
