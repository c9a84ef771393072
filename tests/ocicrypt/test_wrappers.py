"""Key wrappers and key files: JWE forms and algorithms, key encodings, CoCo packets, the keyprovider service."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import struct
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from sealpod.errors import CryptoError, KeyFileError
from sealpod.ocicrypt.keys import load_private_key, load_public_key
from sealpod.ocicrypt.keywrap import jwe, kbs
from sealpod.ocicrypt.keywrap.protocol import ProviderRequest, parse_response, pb_decode, pb_encode
from sealpod.ocicrypt.provider_service import KeyProviderService

KEYS = Path(__file__).parent.parent / "data" / "ocicrypt" / "keys"
DATA = Path(__file__).parent.parent / "data"
SECRET = b'{"symkey":"x"}'


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.mark.parametrize("curve", [ec.SECP256R1(), ec.SECP384R1(), ec.SECP521R1()])
def test_jwe_ec_round_trip(curve: ec.EllipticCurve) -> None:
    key = ec.generate_private_key(curve)
    raw = jwe.wrap(SECRET, [jwe.JweRecipient(key.public_key())])
    document = json.loads(raw)
    assert "recipients" not in document, "one recipient: flattened serialisation"
    header = json.loads(base64.urlsafe_b64decode(document["protected"] + "=="))
    assert header["alg"] == "ECDH-ES+A256KW"
    assert header["enc"] == "A256GCM"
    assert jwe.unwrap(raw, [key]) == SECRET
    assert jwe.unwrap(raw, [ec.generate_private_key(curve)]) is None


def test_jwe_general_form_and_rsa_oaep_256_from_jwk(tmp_path: Path) -> None:
    rsa_key = rsa.generate_private_key(65537, 2048)
    numbers = rsa_key.public_key().public_numbers()
    jwk = {"kty": "RSA", "alg": "RSA-OAEP-256", "n": _b64u(numbers.n.to_bytes(256, "big")), "e": _b64u(b"\x01\x00\x01")}
    recipient_file = tmp_path / "pub.jwk"
    recipient_file.write_text(json.dumps(jwk))
    from sealpod.ocicrypt.layers import Recipients

    recipients = Recipients()
    recipients.add(f"jwe:{recipient_file}")
    recipients.add(f"jwe:{KEYS / 'ec-pub.pem'}")
    raw = jwe.wrap(SECRET, recipients.jwe)
    document = json.loads(raw)
    assert [r["header"]["alg"] for r in document["recipients"]] == ["RSA-OAEP-256", "ECDH-ES+A256KW"]
    assert jwe.unwrap(raw, [rsa_key]) == SECRET
    assert jwe.unwrap(raw, [load_private_key((KEYS / "ec-priv.pem").read_bytes())]) == SECRET
    assert jwe.describe(raw) == ["RSA-OAEP-256", "ECDH-ES+A256KW on P-256"]


def test_jwe_cbc_hmac_content_encryption_is_accepted() -> None:
    """A JWE made by hand with RSA-OAEP and A128CBC-HS256 (RFC 7518 5.2.3), as another tool might write it."""
    key = load_private_key((KEYS / "rsa-priv.pem").read_bytes())
    assert isinstance(key, rsa.RSAPrivateKey)
    cek, iv = os.urandom(32), os.urandom(16)
    protected = _b64u(json.dumps({"alg": "RSA-OAEP", "enc": "A128CBC-HS256"}).encode())
    padder = padding.PKCS7(128).padder()
    padded = padder.update(SECRET) + padder.finalize()
    encryptor = Cipher(algorithms.AES(cek[16:]), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    aad = protected.encode()
    tag = hmac.new(cek[:16], aad + iv + ciphertext + struct.pack(">Q", len(aad) * 8), hashlib.sha256).digest()[:16]
    oaep = asym_padding.OAEP(asym_padding.MGF1(hashes.SHA1()), hashes.SHA1(), None)  # noqa: S303 - RSA-OAEP is SHA-1
    encrypted_key = key.public_key().encrypt(cek, oaep)
    document = {
        "protected": protected,
        "encrypted_key": _b64u(encrypted_key),
        "iv": _b64u(iv),
        "ciphertext": _b64u(ciphertext),
        "tag": _b64u(tag),
    }
    assert jwe.unwrap(json.dumps(document).encode(), [key]) == SECRET
    document["tag"] = _b64u(bytes(16))
    with pytest.raises(CryptoError, match="does not authenticate"):
        jwe.unwrap(json.dumps(document).encode(), [key])


@pytest.mark.parametrize("bad", [b"not json", b"[]", b'{"recipients": []}', b'{"protected": "!!!"}'])
def test_malformed_jwe_is_refused(bad: bytes) -> None:
    with pytest.raises(CryptoError):
        jwe.unwrap(bad, [load_private_key((KEYS / "rsa-priv.pem").read_bytes())])


def test_key_file_forms(tmp_path: Path) -> None:
    rsa_key = load_private_key((KEYS / "rsa-priv.pem").read_bytes())
    pkcs1 = rsa_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    der = rsa_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    encrypted = rsa_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"s3cret")
    )
    for data, password in ((pkcs1, None), (der, None), (encrypted, b"s3cret")):
        assert load_private_key(data, password).private_numbers() == rsa_key.private_numbers()  # type: ignore[union-attr]
    with pytest.raises(KeyFileError, match="is encrypted"):
        load_private_key(encrypted)
    with pytest.raises(KeyFileError):
        load_private_key(encrypted, b"wrong")
    ec_key = load_private_key((KEYS / "ec-priv.pem").read_bytes())
    assert isinstance(ec_key, ec.EllipticCurvePrivateKey)
    numbers = ec_key.private_numbers()
    jwk = {
        "kty": "EC",
        "crv": "P-256",
        "x": _b64u(numbers.public_numbers.x.to_bytes(32, "big")),
        "y": _b64u(numbers.public_numbers.y.to_bytes(32, "big")),
        "d": _b64u(numbers.private_value.to_bytes(32, "big")),
    }
    from_jwk = load_private_key(json.dumps(jwk).encode())
    assert isinstance(from_jwk, ec.EllipticCurvePrivateKey)
    assert from_jwk.private_numbers() == numbers
    assert load_private_key((KEYS / "ec-priv-sec1.pem").read_bytes()).private_numbers() == numbers  # type: ignore[union-attr]
    public = load_public_key(json.dumps({k: v for k, v in jwk.items() if k != "d"}).encode())
    assert public == ec_key.public_key()
    with pytest.raises(KeyFileError, match="private key"):
        load_public_key((KEYS / "ec-priv.pem").read_bytes())
    with pytest.raises(KeyFileError, match="not a private key"):
        load_private_key((KEYS / "ec-pub.pem").read_bytes())
    with pytest.raises(KeyFileError, match="without a private part"):
        load_private_key(json.dumps({k: v for k, v in jwk.items() if k != "d"}).encode())


def test_kbs_packet_round_trip_and_refusals(tmp_path: Path) -> None:
    kek = os.urandom(32)
    packet = kbs.wrap(SECRET, "kbs:///default/image-kek/app", kek)
    assert list(json.loads(packet)) == ["kid", "wrapped_data", "iv", "wrap_type"]
    asked: list[str] = []

    def getter(kid: str) -> bytes:
        asked.append(kid)
        return kek

    assert kbs.unwrap(packet, getter) == SECRET
    assert asked == ["kbs:///default/image-kek/app"]
    with pytest.raises(CryptoError, match="does not open"):
        kbs.unwrap(packet, lambda kid: os.urandom(32))
    with pytest.raises(CryptoError, match="not a KBS resource"):
        kbs.wrap(SECRET, "kbs:///only/two", kek)
    sample = (DATA / "kbs" / "gc_cdh_image_annotation_packet_v1.json").read_bytes()
    parsed = kbs.AnnotationPacket.from_json(sample)
    assert parsed.wrap_type == "A256GCM"
    assert len(parsed.iv) == 12
    ctr_key, ctr_iv = os.urandom(32), os.urandom(16)
    encryptor = Cipher(algorithms.AES(ctr_key), modes.CTR(ctr_iv)).encryptor()
    ctr_packet = json.dumps(
        {
            "kid": "kbs:///a/b/c",
            "wrapped_data": base64.b64encode(encryptor.update(SECRET)).decode(),
            "iv": base64.b64encode(ctr_iv).decode(),
            "wrap_type": "A256CTR",
        }
    ).encode()
    assert kbs.unwrap(ctr_packet, lambda kid: ctr_key) == SECRET


@pytest.mark.parametrize(
    ("kid", "path"),
    [
        ("kbs:///default/key/1", "default/key/1"),
        ("kbs://kbs.example:8080/r/t/g", "r/t/g"),
        ("/default/key/1", "default/key/1"),
        ("host/r/t/g", "r/t/g"),
        ("kbs+pkcs11:///r/t/g", "r/t/g"),
    ],
)
def test_resource_paths(kid: str, path: str) -> None:
    assert kbs.resource_path(kid) == path


def test_keyprovider_service_wraps_and_unwraps(tmp_path: Path) -> None:
    store = kbs.KekStore(tmp_path / "keks.json")
    service = KeyProviderService(store)
    params = {"attestation-agent": [b"keyid=kbs:///default/image-kek/t1"]}
    answer = service.handle(ProviderRequest("keywrap", params, optsdata=SECRET).to_json())
    annotation = parse_response(answer, "keywrap")
    assert json.loads(annotation)["kid"] == "kbs:///default/image-kek/t1"
    assert os.stat(store.path).st_mode & 0o077 == 0, "the KEK store is private"
    reply = service.handle(ProviderRequest("keyunwrap", {}, annotation=annotation).to_json())
    assert parse_response(reply, "keyunwrap") == SECRET
    kek_file = tmp_path / "kek"
    kek_file.write_bytes(os.urandom(32))
    params = {"attestation-agent": [f"keyid=kbs:///default/image-kek/t2::keypath={kek_file}".encode()]}
    annotation = parse_response(
        service.handle(ProviderRequest("keywrap", params, optsdata=SECRET).to_json()), "keywrap"
    )
    assert kbs.unwrap(annotation, lambda kid: kek_file.read_bytes()) == SECRET
    with pytest.raises(CryptoError, match="unknown op"):
        service.handle(b'{"op": "keyexplode"}')
    with pytest.raises(CryptoError, match="no KEK for"):
        kbs.KekStore(tmp_path / "empty.json").get("kbs:///default/image-kek/t1")


def test_protobuf_envelope() -> None:
    for payload in (b"", b"x", os.urandom(300), os.urandom(70000)):
        assert pb_decode(pb_encode(payload)) == payload
    with pytest.raises(CryptoError):
        pb_decode(b"\x0a\xff\xff")


def test_kek_store_is_safe_under_concurrent_wraps(tmp_path: Path) -> None:
    """skopeo wraps layers concurrently: every caller must get the one KEK that ends up in the store."""
    import threading

    store = kbs.KekStore(tmp_path / "keks.json")
    results: list[bytes] = []
    lock = threading.Lock()

    def worker() -> None:
        kek = kbs.KekStore(store.path).get_or_add("kbs:///default/image-kek/race", lambda: os.urandom(32))
        with lock:
            results.append(kek)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1
    assert store.get("kbs:///default/image-kek/race") == results[0]
    with pytest.raises(CryptoError, match="different KEK"):
        store.put("kbs:///default/image-kek/race", os.urandom(32))
