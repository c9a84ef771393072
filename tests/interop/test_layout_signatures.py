"""Layout signatures with the real cosign 2.5: cosign verifies what `sealpod image sign oci:...` wrote
(`cosign verify --local-image`), and sealpod verifies what `cosign save` wrote (a cosign-signed registry image saved
to a layout), each refusing another key's signatures; sealpod adds its signature to cosign's in a saved layout."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from sealpod.oci.localregistry import LocalRegistry
from tests.conftest import need, run_tool
from tests.helpers import E, image_from_tars, make_tar
from tests.interop.test_signatures import PASS, sealpod

pytestmark = pytest.mark.interop
IDENTITY = "localhost/layout/app:v1"


def _cosign(tools: Path, *args: str | Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(tools / "cosign"), *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "COSIGN_PASSWORD": PASS},
    )
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


def _verify_local(tools: Path, directory: Path, key: Path) -> subprocess.CompletedProcess[str]:
    return _cosign(tools, "verify", "--local-image", "--key", key, "--insecure-ignore-tlog=true", directory, ok=False)


def _policy(tmp: Path, directory: Path, key: Path, identity: dict[str, Any]) -> Path:
    path = tmp / f"policy-{key.stem}-{identity['type']}.json"
    requirement = {"type": "sigstoreSigned", "keyPath": str(key), "signedIdentity": identity}
    transports = {"oci": {str(directory): [requirement]}}
    path.write_text(json.dumps({"default": [{"type": "reject"}], "transports": transports}))
    return path


def _keys(tmp: Path, tools: Path) -> None:
    sealpod("image", "keygen", "--output-key-prefix", tmp / "sealpod")
    sealpod("image", "keygen", "--output-key-prefix", tmp / "stranger")
    _cosign(tools, "generate-key-pair", "--output-key-prefix", tmp / "cosign")


def test_cosign_verifies_a_layout_signed_by_sealpod(tmp_path: Path, trixie_tools: Path) -> None:
    _keys(tmp_path, trixie_tools)
    directory = tmp_path / "layout"
    digest = image_from_tars(directory, "v1", [make_tar([E("app", "dir"), E("app/v", data=b"1")])])
    unsigned = _verify_local(trixie_tools, directory, tmp_path / "sealpod.pub")
    assert unsigned.returncode != 0
    assert "must verify either an image index or image" in unsigned.stderr  # no image carries cosign's marker
    signed = sealpod("image", "sign", f"oci:{directory}:v1", "--key", tmp_path / "sealpod.key", "--identity", IDENTITY)
    assert f"signed {digest} as {IDENTITY}" in signed.stderr
    accepted = _verify_local(trixie_tools, directory, tmp_path / "sealpod.pub")
    assert accepted.returncode == 0, accepted.stderr
    (claims,) = json.loads(accepted.stdout)
    assert claims["critical"]["image"]["docker-manifest-digest"] == digest
    assert claims["critical"]["identity"]["docker-reference"] == IDENTITY
    refused = _verify_local(trixie_tools, directory, tmp_path / "cosign.pub")
    assert refused.returncode != 0
    assert "no matching signatures: invalid signature" in refused.stderr
    # skopeo still reads the image and sees the signature manifest as one more tag
    run_tool(need("skopeo"), "inspect", f"oci:{directory}:v1")


def test_sealpod_verifies_a_layout_cosign_saved_and_adds_its_own_signature(
    registry: LocalRegistry, tmp_path: Path, trixie_tools: Path
) -> None:
    _keys(tmp_path, trixie_tools)
    repo = f"{registry.host}/layout/cosign{abs(hash(str(tmp_path))) % 10**8}"
    image_from_tars(tmp_path / "src", "v1", [make_tar([E("app", "dir"), E("app/v", data=b"c")])])
    run_tool(need("skopeo"), "copy", "--dest-tls-verify=false", f"oci:{tmp_path / 'src'}:v1", f"docker://{repo}:v1")
    _cosign(
        trixie_tools,
        "sign",
        "--key",
        tmp_path / "cosign.key",
        "--tlog-upload=false",
        "--allow-http-registry",
        "-y",
        f"{repo}:v1",
    )
    saved = tmp_path / "saved"
    _cosign(trixie_tools, "save", "--allow-http-registry", "--dir", saved, f"{repo}:v1")
    entries = json.loads((saved / "index.json").read_text())["manifests"]
    assert [e["annotations"] for e in entries] == [
        {"kind": "dev.cosignproject.cosign/image"},
        {"kind": "dev.cosignproject.cosign/sigs"},
    ], "cosign's layout: untagged entries paired by kind markers"

    def verify(key: str, identity: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        policy = _policy(tmp_path, saved, tmp_path / f"{key}.pub", identity)
        return sealpod("image", "verify", f"oci:{saved}", "--policy", policy, ok=False)

    exact_repo = {"type": "exactRepository", "dockerRepository": repo}  # cosign claims the bare repository
    accepted = verify("cosign", exact_repo)
    assert accepted.returncode == 0, accepted.stderr
    refused = verify("stranger", exact_repo)
    assert refused.returncode == 1
    assert "a signature does not verify with the policy's keys" in refused.stderr
    refused = verify("cosign", {"type": "matchRepoDigestOrExact"})
    assert refused.returncode == 1
    assert "needs exactReference or exactRepository" in refused.stderr

    # sealpod signs the saved image too: its signature joins cosign's, and both tools accept both keys
    sealpod("image", "sign", f"oci:{saved}", "--key", tmp_path / "sealpod.key", "--identity", IDENTITY)
    for key in ("cosign", "sealpod"):
        assert _verify_local(trixie_tools, saved, tmp_path / f"{key}.pub").returncode == 0, key
    exact_ref = {"type": "exactReference", "dockerReference": IDENTITY}
    assert verify("sealpod", exact_ref).returncode == 0
    assert verify("cosign", exact_repo).returncode == 0
    assert verify("stranger", exact_ref).returncode == 1
