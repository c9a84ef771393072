"""The real skopeo-made vectors decrypt, through the whole pull, with every key form that should open them."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import pytest

from sealpod.errors import CryptoError
from sealpod.oci import mediatypes as mt
from sealpod.oci.layout import OciLayout
from sealpod.oci.models import Manifest
from sealpod.oci.platform import parse_platform
from sealpod.oci.pull import pull
from sealpod.oci.source import LayoutStore
from sealpod.ocicrypt.keywrap.protocol import ProviderRequest, parse_response
from sealpod.ocicrypt.layers import DecryptionKeys, LayerDecryption, open_options

DATA = Path(__file__).parent.parent / "data" / "ocicrypt"
KEYS = DATA / "keys"
PLAIN_DIGEST = "sha256:67f931f9d90dc5392be456cbb3bfaa8e806d1e6d37b8f5bc60fc21b57805b979"


def _vector_image(tmp_path: Path, manifest_file: str, layer_file: str) -> Path:
    """A layout holding skopeo's encrypted layer (annotations and all) with a config for its plaintext."""
    manifest = json.loads((DATA / manifest_file).read_text())
    layer = manifest["layers"][0]
    blob = (DATA / layer_file).read_bytes()
    assert hashlib.sha256(blob).hexdigest() == layer["digest"].split(":")[1]
    keys = DecryptionKeys()
    keys.add(str(KEYS / "rsa-priv.pem"))
    private, public = open_options(Manifest.from_wire(manifest).layers[0], keys)
    from sealpod.ocicrypt.cipher import LayerDecryptor

    decryptor = LayerDecryptor(private, public)
    plain = decryptor.update(blob)
    decryptor.verify()
    diff_id = "sha256:" + hashlib.sha256(gzip.decompress(plain)).hexdigest()
    layout = OciLayout(tmp_path / "layout")
    layout.put_bytes(blob, layer["mediaType"])
    config = {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [diff_id]}}
    manifest["config"] = layout.put_bytes(json.dumps(config).encode(), mt.OCI_CONFIG).to_json_dict()
    layout.tag(layout.put_bytes(json.dumps(manifest).encode(), mt.OCI_MANIFEST), "enc")
    return tmp_path / "layout"


@pytest.mark.parametrize(
    ("manifest_file", "layer_file", "key"),
    [
        ("enc-jwe-manifest.json", "enc-layer.bin", "rsa-priv.pem"),
        ("enc-jwe-manifest.json", "enc-layer.bin", "ec-priv.pem"),
        ("enc-jwe-manifest.json", "enc-layer.bin", "ec-priv-sec1.pem"),
        ("enc-jwe-rsa-single-manifest.json", "enc-layer-rsa1.bin", "rsa-priv.pem"),
    ],
)
def test_skopeo_vectors_decrypt_through_pull(tmp_path: Path, manifest_file: str, layer_file: str, key: str) -> None:
    layout = _vector_image(tmp_path, manifest_file, layer_file)
    keys = DecryptionKeys()
    keys.add(str(KEYS / key))
    store = LayoutStore(str(layout), "enc")
    from sealpod.oci.source import resolve

    image = resolve(store, parse_platform("linux/amd64"))
    transform = LayerDecryption(image.manifest, keys)
    assert transform.options[image.manifest.layers[0].digest][0].digest == PLAIN_DIGEST
    pull(store, tmp_path / "rootfs", parse_platform("linux/amd64"), transform=transform)
    assert (tmp_path / "rootfs/app/hello.txt").read_text() == "hello ocicrypt\n"


def test_unrelated_key_is_refused_naming_the_recipients(tmp_path: Path) -> None:
    manifest = Manifest.from_wire(json.loads((DATA / "enc-jwe-manifest.json").read_text()))
    keys = DecryptionKeys()
    keys.add(str(KEYS / "other-priv.pem"))
    with pytest.raises(CryptoError, match="RSA-OAEP, ECDH-ES\\+A256KW on P-256"):
        LayerDecryption(manifest, keys)
    with pytest.raises(CryptoError, match="is encrypted") as err:
        LayerDecryption(manifest, DecryptionKeys())
    assert err.value.hint is not None
    assert "--decryption-key" in err.value.hint


def test_captured_keyprovider_messages_round_trip_byte_for_byte() -> None:
    for name in ("kp-keywrap-stdin.json", "kp-keyunwrap-stdin.json"):
        raw = (DATA / name).read_bytes().strip()
        assert ProviderRequest.from_json(raw).to_json() == raw
    wrap_in = ProviderRequest.from_json((DATA / "kp-keywrap-stdin.json").read_bytes())
    assert wrap_in.parameters == {"simplecrypt": [b"alice@example.com", b"bob"]}
    assert wrap_in.optsdata is not None
    assert json.loads(wrap_in.optsdata)["digest"] == PLAIN_DIGEST
    annotation = parse_response((DATA / "kp-keywrap-stdout.json").read_bytes(), "keywrap")
    kp_manifest = json.loads((DATA / "enc-kp-manifest.json").read_text())
    import base64

    value = kp_manifest["layers"][0]["annotations"]["org.opencontainers.image.enc.keys.provider.simplecrypt"]
    assert base64.b64decode(value) == annotation
    optsdata = parse_response((DATA / "kp-keyunwrap-stdout.json").read_bytes(), "keyunwrap")
    assert json.loads(optsdata)["digest"] == PLAIN_DIGEST


def test_rust_style_byte_arrays_are_accepted() -> None:
    raw = json.dumps(
        {
            "op": "keyunwrap",
            "keywrapparams": {"ec": None, "optsdata": None},
            "keyunwrapparams": {"dc": {"Parameters": {"x": [list(b"p")]}}, "annotation": list(b"{}")},
        }
    )
    request = ProviderRequest.from_json(raw.encode())
    assert request.annotation == b"{}"
    assert request.parameters == {"x": [b"p"]}
    assert parse_response(json.dumps({"keywrapresults": {"annotation": list(b"abc")}}).encode(), "keywrap") == b"abc"
