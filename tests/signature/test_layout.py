"""Signatures of OCI layout images, kept in the layout (sealpod.signature.layout), under a policy scoped to the layout
directory: what is accepted, what is refused and with which message, and the index entries cosign reads."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sealpod.agent.signatures import image_signatures
from sealpod.errors import SignatureError
from sealpod.oci.layout import KIND, REF_NAME, OciLayout
from sealpod.oci.source import LayoutStore, open_store, parse_location
from sealpod.signature import layout as layout_signatures
from sealpod.signature import sigstore
from sealpod.signature.payload import COSIGN_TYPE, make_payload
from sealpod.signature.policy import ImageUnderCheck, parse_policy
from sealpod.signature.registriesd import RegistriesD, Section
from tests.helpers import E, image_from_tars, make_tar

PASS = b"pw"
IDENTITY = "r.io/release/app:1.0"


@pytest.fixture
def images(tmp_path: Path) -> dict[str, str]:
    """A layout with two images, v1 and v2: their manifest digests."""
    return {
        tag: image_from_tars(tmp_path / "images", tag, [make_tar([E("app", "dir"), E("app/v", data=tag.encode())])])
        for tag in ("v1", "v2")
    }


def _sign(directory: Path, digest: str, key: Any, claimed: str = IDENTITY, claimed_digest: str | None = None) -> None:
    payload = make_payload(COSIGN_TYPE, claimed, claimed_digest or digest)
    layout_signatures.write_signature(LayoutStore(str(directory), None), digest, payload, sigstore.sign(key, payload))


def _evaluate(directory: Path, tag: str, keys: dict[str, Any], identity: dict[str, Any] | None = None) -> str:
    """`sealpod image verify`'s and the enclave's check of oci:DIRECTORY:TAG under a policy scoped to DIRECTORY."""
    requirement: dict[str, Any] = {"type": "sigstoreSigned", "keyPath": str(keys["good.pub"])}
    requirement["signedIdentity"] = identity or {"type": "exactReference", "dockerReference": IDENTITY}
    policy = parse_policy(
        json.dumps({"default": [{"type": "reject"}], "transports": {"oci": {str(directory): [requirement]}}}).encode()
    )
    location = parse_location(f"oci:{directory}:{tag}")
    store = open_store(location)
    digest = store.get_manifest(None).digest
    signatures = image_signatures(location, digest, store, RegistriesD(Section(), {}))
    subject = ImageUnderCheck("oci", None, digest, path=location.path, tag=tag)
    return policy.evaluate(subject, signatures)


def test_a_signed_layout_image_is_accepted_and_the_others_refused(
    keys: dict[str, Any], images: dict[str, str], tmp_path: Path
) -> None:
    directory = tmp_path / "images"
    _sign(directory, images["v1"], keys["good"])
    assert _evaluate(directory, "v1", keys) == f"transports.oci[{str(directory)!r}]"
    with pytest.raises(SignatureError, match=re.escape(f"oci:{directory}:v2 has no sigstoreSigned signatures")):
        _evaluate(directory, "v2", keys)
    _sign(directory, images["v2"], keys["other"])
    with pytest.raises(SignatureError, match="a signature does not verify with the policy's keys"):
        _evaluate(directory, "v2", keys)


def test_a_signature_moved_to_another_image_or_claiming_another_identity_is_refused(
    keys: dict[str, Any], images: dict[str, str], tmp_path: Path
) -> None:
    directory = tmp_path / "images"
    # the host copies v1's signature manifest under v2's .sig tag: the payload still names v1's digest
    _sign(directory, images["v1"], keys["good"])
    layout = OciLayout(directory)
    v1_sigs = layout.find(sigstore.attachment_tag(images["v1"]))
    layout.tag(v1_sigs, sigstore.attachment_tag(images["v2"]))
    with pytest.raises(SignatureError, match=f"signed manifest {images['v1']} is not {images['v2']}"):
        _evaluate(directory, "v2", keys)
    # the right key and digest, another claimed identity
    _sign(tmp_path / "images", images["v1"], keys["good"], claimed="r.io/release/app:2.0")
    _evaluate(directory, "v1", keys)  # the first signature still satisfies the policy
    fresh = tmp_path / "fresh"
    digest = image_from_tars(fresh, "v1", [make_tar([E("x", data=b"x")])])
    _sign(fresh, digest, keys["good"], claimed="r.io/release/app:2.0")
    with pytest.raises(SignatureError, match=re.escape("'r.io/release/app:2.0' is not accepted by exactReference")):
        _evaluate(fresh, "v1", keys)


@pytest.mark.parametrize(
    ("identity", "accepted"),
    [
        ({"type": "exactReference", "dockerReference": IDENTITY}, True),
        ({"type": "exactRepository", "dockerRepository": "r.io/release/app"}, True),
        ({"type": "exactRepository", "dockerRepository": "r.io/release/other"}, False),
        ({"type": "matchRepoDigestOrExact"}, False),
        ({"type": "matchExact"}, False),
        ({"type": "matchRepository"}, False),
        ({"type": "remapIdentity", "prefix": "r.io", "signedPrefix": "r.io"}, False),
    ],
)
def test_a_layout_image_has_no_docker_reference_so_only_exact_identities_match(
    identity: dict[str, Any], accepted: bool, keys: dict[str, Any], images: dict[str, str], tmp_path: Path
) -> None:
    directory = tmp_path / "images"
    _sign(directory, images["v1"], keys["good"])
    if accepted:
        _evaluate(directory, "v1", keys, identity)
        return
    with pytest.raises(SignatureError, match=f"is not accepted by {identity['type']}") as err:
        _evaluate(directory, "v1", keys, identity)
    if identity["type"] != "exactRepository":
        assert "needs exactReference or exactRepository" in str(err.value)


def test_the_index_carries_cosigns_markers_on_the_image_signed_last(
    keys: dict[str, Any], images: dict[str, str], tmp_path: Path
) -> None:
    directory = tmp_path / "images"
    _sign(directory, images["v1"], keys["good"])
    _sign(directory, images["v2"], keys["good"])
    entries = json.loads((directory / "index.json").read_text())["manifests"]
    kinds = {e["annotations"].get(REF_NAME): e["annotations"].get(KIND) for e in entries}
    assert kinds == {
        "v1": None,
        "v2": layout_signatures.COSIGN_IMAGE,
        sigstore.attachment_tag(images["v1"]): None,
        sigstore.attachment_tag(images["v2"]): layout_signatures.COSIGN_SIGS,
    }
    # both stay verifiable by sealpod through their tags
    _evaluate(directory, "v1", keys)
    _evaluate(directory, "v2", keys)


def test_cosign_shaped_signatures_count_only_for_the_image_cosign_marked(
    keys: dict[str, Any], images: dict[str, str], tmp_path: Path
) -> None:
    """A layout as `cosign save` writes it: untagged entries, paired by their kind markers only."""
    directory = tmp_path / "images"
    _sign(directory, images["v1"], keys["good"])
    index = json.loads((directory / "index.json").read_text())
    for entry in index["manifests"]:  # drop the .sig tag: only cosign's markers pair the signatures with v1
        if entry["annotations"][REF_NAME] == sigstore.attachment_tag(images["v1"]):
            del entry["annotations"][REF_NAME]
    (directory / "index.json").write_text(json.dumps(index))
    store = LayoutStore(str(directory), None)
    assert len(layout_signatures.read_signatures(store, images["v1"])) == 1
    assert _evaluate(directory, "v1", keys)
    assert layout_signatures.read_signatures(store, images["v2"]) == []
    with pytest.raises(SignatureError, match="has no sigstoreSigned signatures"):
        _evaluate(directory, "v2", keys)


def test_an_untagged_reference_skips_signature_entries(
    keys: dict[str, Any], images: dict[str, str], tmp_path: Path
) -> None:
    single = tmp_path / "single"
    digest = image_from_tars(single, "only", [make_tar([E("x", data=b"x")])])
    _sign(single, digest, keys["good"])
    assert OciLayout(single).find(None).digest == digest


def test_signing_a_layout_image_needs_a_key_and_the_identity_to_claim(images: dict[str, str], tmp_path: Path) -> None:
    sealpod = str(Path(sys.executable).with_name("sealpod"))
    env = {**os.environ, "COSIGN_PASSWORD": "pw"}
    subprocess.run([sealpod, "image", "keygen", "--output-key-prefix", str(tmp_path / "k")], env=env, check=True)
    image = f"oci:{tmp_path / 'images'}:v1"
    for args in (["--key", str(tmp_path / "k.key")], ["--sign-by", "ABCD", "--identity", IDENTITY]):
        proc = subprocess.run(
            [sealpod, "image", "sign", image, *args], env=env, capture_output=True, text=True, check=False
        )
        assert proc.returncode != 0
        assert "an OCI layout image is signed with --key and --identity" in proc.stderr
    assert sigstore.attachment_tag(images["v1"]) not in (tmp_path / "images" / "index.json").read_text()
