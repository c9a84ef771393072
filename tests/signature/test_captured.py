"""The signatures skopeo, cosign and gpg made (tests/data/sig) verify with sealpod's code, and nothing else does."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from sealpod.errors import KeyFileError, SignatureError
from sealpod.signature import gpg, sigstore
from sealpod.signature.payload import ATOMIC_TYPE, COSIGN_TYPE, parse_payload

DATA = Path(__file__).parent.parent / "data" / "sig"
PASS = (DATA / "passphrase").read_bytes()
KEYS = {"pycosign": "pycosign.key", "skopeo118": "skopeo118.private", "cosign25": "cosign25.key"}


def _public(name: str) -> sigstore.PublicKey:
    return sigstore.load_public_key((DATA / f"{name}.pub").read_bytes())


@pytest.mark.parametrize("name", sorted(KEYS))
def test_every_private_key_format_opens_and_matches_its_public_key(name: str) -> None:
    private = sigstore.load_private_key((DATA / KEYS[name]).read_bytes(), PASS)
    pem = private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert sigstore.load_public_key(pem) == _public(name)
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        sigstore.load_private_key((DATA / KEYS[name]).read_bytes(), b"not it")


def test_skopeo_attachment_signatures_verify_each_with_exactly_one_key() -> None:
    manifest = json.loads((DATA / "sigstore-sig-manifest.json").read_text())
    keys = {name: _public(name) for name in KEYS}
    signers = []
    for index, layer in enumerate(manifest["layers"]):
        payload = (DATA / f"sigstore-payload-{index}.json").read_bytes()
        assert f"sha256:{hashlib.sha256(payload).hexdigest()}" == layer["digest"]
        signature = base64.b64decode(layer["annotations"][sigstore.SIGNATURE_ANNOTATION])
        good = [name for name, key in keys.items() if sigstore.verify(key, payload, signature)]
        assert len(good) == 1
        signers.append(good[0])
        claims = parse_payload(payload, COSIGN_TYPE)
        assert claims.docker_reference.startswith("127.0.0.1:5055/test/signed:")
        assert not sigstore.verify(keys[good[0]], payload + b" ", signature)
    assert sorted(signers) == sorted(KEYS)


def test_cosign_signature_verifies_and_claims_the_bare_repository() -> None:
    manifest = json.loads((DATA / "cosign25-sig-manifest.json").read_text())
    payload = (DATA / "cosign25-payload.json").read_bytes()
    signature = base64.b64decode(manifest["layers"][0]["annotations"][sigstore.SIGNATURE_ANNOTATION])
    assert sigstore.verify(_public("cosign25"), payload, signature)
    assert not sigstore.verify(_public("pycosign"), payload, signature)
    claims = parse_payload(payload, COSIGN_TYPE)
    assert claims.docker_reference == "127.0.0.1:5055/test/cosigned"
    assert claims.optional is None


@pytest.mark.parametrize("keyring", ["gpg-pub.gpg", "gpg-pub.asc"])
def test_skopeo_gpg_signature_verifies_with_gpgv(keyring: str) -> None:
    signature = (DATA / "gpg-simple-signing-signature-1.bin").read_bytes()
    verified = gpg.verify(signature, [(DATA / keyring).read_bytes()])
    assert verified is not None
    assert json.loads(verified.payload) == json.loads((DATA / "gpg-simple-signing-payload.json").read_bytes())
    claims = parse_payload(verified.payload, ATOMIC_TYPE)
    assert claims.manifest_digest == "sha256:ced6a59731b2e6a69d0dce9e964945fdd514289d93ea6130dca7a1947487bf30"
    assert claims.docker_reference == "127.0.0.1:5055/test/gpgsigned:v3"


def test_gpg_refuses_other_keys_and_altered_signatures(tmp_path: Path) -> None:
    signature = (DATA / "gpg-simple-signing-signature-1.bin").read_bytes()
    other = (DATA / "cosign25.pub").read_bytes()  # not an OpenPGP key at all
    assert gpg.verify(signature, [other]) is None
    altered = bytearray(signature)
    altered[len(altered) // 2] ^= 0x01
    assert gpg.verify(bytes(altered), [(DATA / "gpg-pub.gpg").read_bytes()]) is None


@pytest.mark.parametrize(
    ("mutation", "message"),
    [
        (lambda d: d.update(extra=1), "unexpected"),
        (lambda d: d["critical"].update(extra=1), "unexpected"),
        (lambda d: d["critical"].pop("identity"), "missing"),
        (lambda d: d["critical"]["image"].update({"docker-manifest-digest": "md5:00"}), "digest"),
        (lambda d: d["critical"].update(type="atomic container signature"), "is not"),
        (lambda d: d.update(optional=[1]), "object or null"),
    ],
)
def test_payload_parsing_is_strict(mutation, message: str) -> None:  # type: ignore[no-untyped-def]
    document = json.loads((DATA / "cosign25-payload.json").read_bytes())
    mutation(document)
    with pytest.raises(SignatureError, match=message):
        parse_payload(json.dumps(document).encode(), COSIGN_TYPE)
