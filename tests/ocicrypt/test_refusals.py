"""Every way an encrypted layer can be wrong is refused with a clear message, and nothing reaches the rootfs."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sealpod.errors import CryptoError, DigestMismatchError, SealpodError
from sealpod.oci import mediatypes as mt
from sealpod.oci.copy import copy_image
from sealpod.oci.layout import OciLayout
from sealpod.oci.platform import parse_platform
from sealpod.oci.pull import unpack_image
from sealpod.oci.source import LayoutStore, resolve
from sealpod.ocicrypt.keys import load_public_key
from sealpod.ocicrypt.keywrap import jwe
from sealpod.ocicrypt.layers import DecryptionKeys, LayerDecryption, LayerEncryption, Recipients
from sealpod.ocicrypt.options import ANNOTATION_KEYS_PREFIX, ANNOTATION_PUBOPTS, PrivateOptions
from tests.conftest import snapshot
from tests.helpers import E, image_from_tars, make_tar

KEYS = Path(__file__).parent.parent / "data" / "ocicrypt" / "keys"
AMD64 = parse_platform("linux/amd64")


def _encrypted(tmp_path: Path) -> Path:
    image_from_tars(
        tmp_path / "plain",
        "v1",
        [make_tar([E("secret", data=b"top secret\n" * 500)]), make_tar([E("more", data=b"x" * 3000)])],
    )
    recipients = Recipients()
    recipients.add(f"jwe:{KEYS / 'rsa-pub.pem'}")
    recipients.add(f"jwe:{KEYS / 'ec-pub.pem'}")
    copy_image(
        LayoutStore(str(tmp_path / "plain"), "v1"),
        LayoutStore(str(tmp_path / "enc"), "v1"),
        AMD64,
        rewriter=LayerEncryption(recipients),
    )
    return tmp_path / "enc"


def _edit(layout_dir: Path, edit_layer: Callable[[dict[str, Any], OciLayout], None]) -> None:
    """Rewrite the second layer's descriptor (and maybe its blob), keeping every digest consistent."""
    layout = OciLayout(layout_dir)
    manifest = json.loads(layout.get_manifest("v1").raw)
    edit_layer(manifest["layers"][1], layout)
    layout.tag(layout.put_bytes(json.dumps(manifest).encode(), mt.OCI_MANIFEST), "v1")


def _replace_blob(layer: dict[str, Any], layout: OciLayout, blob: bytes) -> None:
    layer.update(layout.put_bytes(blob, layer["mediaType"]).to_json_dict() | {"annotations": layer["annotations"]})


def _flip_ciphertext(layer: dict[str, Any], layout: OciLayout) -> None:
    blob = bytearray(layout.blob_path(layer["digest"]).read_bytes())
    blob[len(blob) // 2] ^= 0x01
    _replace_blob(layer, layout, bytes(blob))


def _truncate(layer: dict[str, Any], layout: OciLayout) -> None:
    _replace_blob(layer, layout, layout.blob_path(layer["digest"]).read_bytes()[:-100])


def _flip_hmac(layer: dict[str, Any], layout: OciLayout) -> None:
    pubopts = json.loads(base64.b64decode(layer["annotations"][ANNOTATION_PUBOPTS]))
    mac = bytearray(base64.b64decode(pubopts["hmac"]))
    mac[0] ^= 0x80
    pubopts["hmac"] = base64.b64encode(bytes(mac)).decode()
    layer["annotations"][ANNOTATION_PUBOPTS] = base64.b64encode(json.dumps(pubopts).encode()).decode()


def _rewrap(layer: dict[str, Any], change: Callable[[PrivateOptions], PrivateOptions | bytes]) -> None:
    keys = DecryptionKeys()
    keys.add(str(KEYS / "rsa-priv.pem"))
    from sealpod.oci.models import Descriptor
    from sealpod.ocicrypt.layers import open_options

    private, _ = open_options(Descriptor.from_wire(layer), keys)
    changed = change(private)
    optsdata = changed if isinstance(changed, bytes) else changed.to_json()
    recipient = jwe.JweRecipient(load_public_key((KEYS / "rsa-pub.pem").read_bytes()))
    layer["annotations"][ANNOTATION_KEYS_PREFIX + "jwe"] = base64.b64encode(jwe.wrap(optsdata, [recipient])).decode()


def _wrong_digest(layer: dict[str, Any], layout: OciLayout) -> None:
    other = "sha256:" + hashlib.sha256(b"another blob").hexdigest()
    _rewrap(layer, lambda p: PrivateOptions(p.symkey, other, p.nonce))


def _unknown_alg(layer: dict[str, Any], layout: OciLayout) -> None:
    document = json.loads(base64.b64decode(layer["annotations"][ANNOTATION_KEYS_PREFIX + "jwe"]))
    for recipient in document["recipients"]:
        recipient["header"]["alg"] = "RSA1_5"
    layer["annotations"][ANNOTATION_KEYS_PREFIX + "jwe"] = base64.b64encode(json.dumps(document).encode()).decode()


def _short_key(layer: dict[str, Any], layout: OciLayout) -> None:
    _rewrap(
        layer,
        lambda p: json.dumps(
            {
                "symkey": base64.b64encode(b"k" * 16).decode(),
                "digest": p.digest,
                "cipheroptions": {"nonce": base64.b64encode(p.nonce).decode()},
            }
        ).encode(),
    )


CASES: dict[str, tuple[Callable[[dict[str, Any], OciLayout], None], type[Exception], str]] = {
    "flipped-ciphertext-byte": (_flip_ciphertext, CryptoError, "HMAC does not match"),
    "truncated-blob": (_truncate, CryptoError, "HMAC does not match"),
    "flipped-hmac": (_flip_hmac, CryptoError, "HMAC does not match"),
    "wrong-digest-in-private-options": (_wrong_digest, DigestMismatchError, "private options say"),
    "jwe-unknown-alg": (_unknown_alg, CryptoError, "unsupported JWE key management algorithm RSA1_5"),
    "short-symkey": (_short_key, CryptoError, "'symkey' is 16 bytes"),
}


def _pull(layout_dir: Path, target: Path, key: str) -> None:
    keys = DecryptionKeys()
    keys.add(key)
    store = LayoutStore(str(layout_dir), "v1")
    image = resolve(store, AMD64)
    unpack_image(store, image, target, transform=LayerDecryption(image.manifest, keys))


@pytest.mark.parametrize("name", sorted(CASES))
def test_tampered_encrypted_layer_is_refused(name: str, tmp_path: Path) -> None:
    edit, error, message = CASES[name]
    enc = _encrypted(tmp_path)
    _edit(enc, edit)
    before = snapshot(tmp_path)
    with pytest.raises(error, match=message):
        _pull(enc, tmp_path / "rootfs", str(KEYS / "rsa-priv.pem"))
    assert snapshot(tmp_path) == before, "nothing may be committed"


def test_untampered_image_pulls(tmp_path: Path) -> None:
    enc = _encrypted(tmp_path)
    _pull(enc, tmp_path / "rootfs", str(KEYS / "ec-priv.pem"))
    assert (tmp_path / "rootfs/secret").read_bytes() == b"top secret\n" * 500


@pytest.mark.parametrize("key_kind", ["other-rsa", "fresh-sec1-ec"])
def test_keys_that_are_not_recipients_are_refused(key_kind: str, tmp_path: Path) -> None:
    enc = _encrypted(tmp_path)
    if key_kind == "other-rsa":
        key_file = KEYS / "other-priv.pem"
    else:
        key_file = tmp_path / "sec1.pem"
        key_file.write_bytes(
            ec.generate_private_key(ec.SECP256R1()).private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
            )
        )
        assert b"BEGIN EC PRIVATE KEY" in key_file.read_bytes()
    before = snapshot(tmp_path)
    with pytest.raises(SealpodError, match=r"no decryption key opens layer .* RSA-OAEP, ECDH-ES\+A256KW on P-256"):
        _pull(enc, tmp_path / "rootfs", str(key_file))
    assert snapshot(tmp_path) == before
