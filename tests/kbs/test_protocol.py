"""The KBS protocol over real HTTP with the simulated SGX TEE: the handshake, and every refusal with trustee's
error type and status and a detail that says what to fix."""

from __future__ import annotations

import base64
import email.utils
import hashlib
import json
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from sealpod._internal.jose import compact_json, public_jwk
from sealpod.kbs.client import resource_jwe
from sealpod.kbs.client.admin import AdminClient
from sealpod.kbs.client.protocol import PROTOCOL_VERSION, jcs, report_data
from sealpod.kbs.client.rcar import KbsClient, KbsClientError
from sealpod.tee.sim import SimPlatform
from tests.kbs.conftest import MRE, MRS, KbsProcess, error_of, register_enclave


def test_spec_byte_vectors() -> None:
    digest = hashlib.sha384(jcs({"b": 1, "a": "test", "c": {"d": "e"}})).hexdigest()
    assert digest.startswith("e71ce8e7")
    assert digest.endswith("8870c3")
    assert (
        base64.urlsafe_b64encode(
            resource_jwe.protected_header("fakealg").replace(b'"enc":"A256GCM"', b'"enc":"fakeenc"')
        ).rstrip(b"=")
        == b"eyJhbGciOiJmYWtlYWxnIiwiZW5jIjoiZmFrZWVuYyJ9"
    )
    assert jcs({"é": 1, "a": [True, None, "x\n"]}) == '{"a":[true,null,"x\\n"],"é":1}'.encode()
    assert jcs(['\u0000\x1f\x7f"\\/\b\f\r\t€😀']) == '["\\u0000\\u001f\x7f\\"\\\\/\\b\\f\\r\\t€😀"]'.encode()
    with pytest.raises(TypeError, match="lone UTF-16 surrogate"):
        jcs({"x": "\ud800"})


def test_compact_json_keeps_or_sorts_keys_past_what_orjson_encodes() -> None:
    """The JOSE parts and the evidence digest's input: compact UTF-8, sorted on request, the same for integers
    beyond 64 bits (the json module's path)."""
    assert compact_json({"b": 1, "a": "é"}) == '{"b":1,"a":"é"}'.encode()
    assert compact_json({"b": 1, "a": {"d": 2, "c": "é"}}, sort_keys=True) == '{"a":{"c":"é","d":2},"b":1}'.encode()
    assert compact_json({"b": 2**70, "a": [1]}, sort_keys=True) == b'{"a":[1],"b":1180591620717411303424}'


@pytest.mark.parametrize("kind", ["P-256", "P-521", "RSA"])
def test_resource_jwe_opens_with_an_independent_jose_library(kind: str) -> None:
    from jwcrypto import jwe as jw
    from jwcrypto import jwk

    if kind == "RSA":
        key = jwk.JWK.generate(kty="RSA", size=2048, alg="RSA-OAEP-256")
    else:
        key = jwk.JWK.generate(kty="EC", crv=kind)
    public = json.loads(key.export_public())
    token = resource_jwe.encrypt(b"the secret", public)
    assert set(token) == {"protected", "encrypted_key", "iv", "ciphertext", "tag"}
    header = json.loads(base64.urlsafe_b64decode(token["protected"] + "=="))
    assert list(header)[:2] == ["alg", "enc"]
    assert header["enc"] == "A256GCM"
    opened = jw.JWE()
    opened.deserialize(json.dumps(token), key=key)
    assert opened.payload == b"the secret"


def _client(server: KbsProcess, sim: SimPlatform, **identity: Any) -> KbsClient:
    attester = sim.attester(mr_enclave=identity.get("mr_enclave", MRE), mr_signer=identity.get("mr_signer", MRS))
    if identity.get("debug"):
        attester.debug = True
    return KbsClient(server.url, attester)


def test_full_handshake_and_token_reuse(kbs_factory: Callable[..., KbsProcess], sim: SimPlatform) -> None:
    server = kbs_factory()
    register_enclave(server.url)
    with AdminClient(server.url) as admin:
        admin.put_resource("default/key/1", b"\x00secret bytes\xff")
    with _client(server, sim) as client:
        assert client.get_resource("kbs:///default/key/1") == b"\x00secret bytes\xff"
        token = client._token
        assert client.get_resource("default/key/1") == b"\x00secret bytes\xff"
        assert client._token == token, "the cached token is reused"
    metrics = httpx.get(f"{server.url}/metrics").text
    assert "sealpod_kbs_resources_released_total 2" in metrics


def test_a_missing_resource_is_refused_by_name_without_a_new_handshake(
    kbs_factory: Callable[..., KbsProcess], sim: SimPlatform
) -> None:
    server = kbs_factory()
    register_enclave(server.url)
    with AdminClient(server.url) as admin:
        admin.put_resource("default/key/1", b"present")
    with _client(server, sim) as client:
        assert client.get_resource("default/key/1") == b"present"
        token = client._token
        for _ in range(2):
            with pytest.raises(KbsClientError) as missing:
                client.get_resource("default/key/absent")
            assert missing.value.variant == "PluginInternalError"
            assert "resource default/key/absent does not exist" in str(missing.value)
        assert client.get_resource("default/key/1") == b"present"
        assert client._token == token
    metrics = httpx.get(f"{server.url}/metrics").text
    assert "sealpod_kbs_requests_auth_total 1" in metrics  # one handshake for all four requests (was three)


def test_session_ids_are_random_hex_led_by_their_expiry(kbs_factory: Callable[..., KbsProcess]) -> None:
    """32 hex digits as trustee's simple UUIDs; the first 8 are the session's expiry, so that the store's key index
    grows at its end; the other 96 bits are random."""
    server = kbs_factory()
    ids = []
    for _ in range(20):
        auth = httpx.post(f"{server.url}/kbs/v0/auth", json={"version": PROTOCOL_VERSION, "tee": "sgx"})
        session_id = auth.cookies["kbs-session-id"]
        expires = email.utils.parsedate_to_datetime(auth.headers["set-cookie"].split("Expires=")[1].split(";")[0])
        assert re.fullmatch("[0-9a-f]{32}", session_id), session_id
        assert int(session_id[:8], 16) == int(expires.timestamp())
        ids.append(session_id)
    assert len({i[8:] for i in ids}) == len(ids)
    assert ids == sorted(ids, key=lambda i: i[:8]), "a later session's id does not sort before an earlier one's"


def _handshake_parts(server: KbsProcess) -> tuple[httpx.Client, str]:
    http = httpx.Client(base_url=server.url)
    nonce = http.post("/kbs/v0/auth", json={"version": PROTOCOL_VERSION, "tee": "sgx", "extra-params": ""}).json()
    return http, nonce["nonce"]


def _attest_body(
    sim: SimPlatform,
    nonce: str,
    jwk: dict[str, Any],
    *,
    bind_nonce: str | None = None,
    bind_jwk: dict[str, Any] | None = None,
    debug: bool = False,
) -> dict[str, Any]:
    rd = report_data(bind_nonce or nonce, bind_jwk or jwk)
    quote = sim.quote(report_data=rd, mr_enclave=MRE, mr_signer=MRS, debug=debug)
    return {
        "runtime-data": {"nonce": nonce, "tee-pubkey": jwk},
        "tee-evidence": {"primary_evidence": {"quote": base64.b64encode(quote).decode()}, "additional_evidence": ""},
    }


def _jwk() -> dict[str, str]:
    return public_jwk(ec.generate_private_key(ec.SECP256R1()).public_key(), "ECDH-ES+A256KW")


def test_refusals(kbs_factory: Callable[..., KbsProcess], sim: SimPlatform) -> None:
    server = kbs_factory()
    register_enclave(server.url)
    jwk = _jwk()

    version = httpx.post(f"{server.url}/kbs/v0/auth", json={"version": "0.3.0", "tee": "sgx"})
    assert error_of(version)[:2] == (401, "AttestationError")
    assert "KBS Client Protocol Version Mismatch" in error_of(version)[2]

    unknown_tee = httpx.post(f"{server.url}/kbs/v0/auth", json={"version": PROTOCOL_VERSION, "tee": "tdx"})
    assert error_of(unknown_tee)[:2] == (401, "AttestationError")
    assert "TEE 'tdx' is not supported" in error_of(unknown_tee)[2]
    assert "set-cookie" not in unknown_tee.headers

    http, nonce = _handshake_parts(server)
    wrong_nonce = http.post("/kbs/v0/attest", json=_attest_body(sim, "AAAA", jwk))
    assert error_of(wrong_nonce)[:2] == (401, "AttestationError")
    assert "nonce" in error_of(wrong_nonce)[2]
    _, other_nonce = _handshake_parts(server)  # a valid nonce, but another session's
    crossed = http.post("/kbs/v0/attest", json=_attest_body(sim, other_nonce, jwk))
    assert error_of(crossed)[:2] == (401, "AttestationError")
    assert "not this session's nonce" in error_of(crossed)[2]
    forged_cookie = httpx.post(
        f"{server.url}/kbs/v0/attest",
        json=_attest_body(sim, nonce, jwk),
        headers={"Cookie": f"kbs-session-id={uuid.uuid4().hex}"},  # a session this KBS never issued
    )
    assert "not this session's nonce" in error_of(forged_cookie)[2]

    substituted = http.post("/kbs/v0/attest", json=_attest_body(sim, nonce, _jwk(), bind_jwk=jwk))
    assert "does not bind" in error_of(substituted)[2]

    old_http, old_nonce = _handshake_parts(server)
    replay_body = _attest_body(sim, old_nonce, jwk)
    assert old_http.post("/kbs/v0/attest", json=replay_body).status_code == 200
    replay_body["runtime-data"]["nonce"] = nonce  # the old evidence, re-sent to a new session
    replayed = http.post("/kbs/v0/attest", json=replay_body)
    assert error_of(replayed)[1] == "AttestationError"
    assert "does not bind" in error_of(replayed)[2]

    debug = http.post("/kbs/v0/attest", json=_attest_body(sim, nonce, jwk, debug=True))
    assert "DEBUG" in error_of(debug)[2]

    no_cookie = httpx.post(f"{server.url}/kbs/v0/attest", json=_attest_body(sim, nonce, jwk))
    assert "cookie" in error_of(no_cookie)[2]

    surrogate = json.dumps(_attest_body(sim, nonce, jwk)).replace(f'"{jwk["x"]}"', '"\\ud800"')
    lone_surrogate = http.post("/kbs/v0/attest", content=surrogate, headers={"content-type": "application/json"})
    assert error_of(lone_surrogate)[:2] == (401, "InvalidRequest")  # a lone surrogate is not JSON text
    assert "malformed Attestation" in error_of(lone_surrogate)[2]

    malformed = http.post("/kbs/v0/attest", json={"runtime-data": {"nonce": nonce}})
    assert error_of(malformed)[1] == "InvalidRequest"
    assert "tee-pubkey" in error_of(malformed)[2] or "tee-evidence" in error_of(malformed)[2]

    no_token = _handshake_parts(server)[0].get("/kbs/v0/resource/default/key/1")  # a session never attested
    assert error_of(no_token)[:2] == (401, "TokenNotFound")
    bad_path = httpx.get(f"{server.url}/kbs/v0/resource/default/key/.hidden")
    assert error_of(bad_path)[:2] == (404, "InvalidRequestPath")
    unknown_endpoint = httpx.get(f"{server.url}/kbs/v0/nothing-here")
    assert error_of(unknown_endpoint)[:2] == (404, "InvalidRequestPath")

    with _client(server, sim) as client, pytest.raises(KbsClientError, match="does not exist") as missing:
        client.get_resource("default/key/missing")
    assert missing.value.variant == "PluginInternalError"
    with _client(server, sim, mr_enclave=b"\x01" * 32) as stranger, pytest.raises(KbsClientError) as denied:
        stranger.get_resource("default/key/1")
    assert (denied.value.status, denied.value.variant) == (401, "PolicyDeny")
    assert "warning" in str(denied.value)


def test_tampered_jwe_is_refused_by_the_client(kbs_factory: Callable[..., KbsProcess], sim: SimPlatform) -> None:
    server = kbs_factory()
    register_enclave(server.url)
    with AdminClient(server.url) as admin:
        admin.put_resource("default/key/1", b"secret")
    with _client(server, sim) as client:
        token = client.attest()
        response = httpx.get(
            f"{server.url}/kbs/v0/resource/default/key/1", headers={"Authorization": f"Bearer {token}"}
        )
        jwe = response.json()
        ciphertext = bytearray(base64.urlsafe_b64decode(jwe["ciphertext"] + "=="))
        ciphertext[0] ^= 1
        jwe["ciphertext"] = base64.urlsafe_b64encode(bytes(ciphertext)).rstrip(b"=").decode()
        with pytest.raises(ValueError, match="does not decrypt"):
            resource_jwe.decrypt(jwe, client.key)
        forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
        refused = httpx.get(
            f"{server.url}/kbs/v0/resource/default/key/1", headers={"Authorization": f"Bearer {forged}"}
        )
        assert error_of(refused)[1] == "TokenVerifierError"


def test_expired_session(kbs_factory: Callable[..., KbsProcess], sim: SimPlatform) -> None:
    server = kbs_factory(session_lifetime=1)
    http, nonce = _handshake_parts(server)
    cookie = http.cookies.get("kbs-session-id")
    time.sleep(2.1)  # the client would drop the expired cookie; a misbehaving one sends it anyway
    expired = httpx.post(
        f"{server.url}/kbs/v0/attest",
        json=_attest_body(sim, nonce, _jwk()),
        headers={"Cookie": f"kbs-session-id={cookie}"},
    )
    assert error_of(expired)[1] == "AttestationError"
    assert "expired" in error_of(expired)[2]


def test_untrusted_sim_root(kbs_factory: Callable[..., KbsProcess], sim: SimPlatform) -> None:
    server = kbs_factory(allow_sim=False)
    http, nonce = _handshake_parts(server)
    refused = http.post("/kbs/v0/attest", json=_attest_body(sim, nonce, _jwk()))
    assert error_of(refused)[1] == "AttestationError"
    assert "untrusted root" in error_of(refused)[2] or "no collateral" in error_of(refused)[2]


DATA = Path(__file__).parent.parent / "data" / "kbs"


def test_trustee_policies_run_unmodified_with_the_sample_tee(kbs_factory: Callable[..., KbsProcess]) -> None:
    from sealpod.tee.sample import SampleAttester

    server = kbs_factory(allow_sample=True)
    with AdminClient(server.url) as admin:
        admin.set_attestation_policy((DATA / "trustee_as_ear_default_policy_cpu.rego").read_text())
        admin.put_resource("default/key/1", b"secret")
        admin.set_resource_policy((DATA / "trustee_kbs_resource_policy_default.rego").read_text())
    with KbsClient(server.url, SampleAttester()) as client:
        from sealpod._internal.jose import decode_jws

        claims = decode_jws(client.attest())[1]
        vector = claims["submods"]["cpu0"]["ear.trustworthiness-vector"]
        assert set(vector) == {
            "instance-identity",
            "configuration",
            "executables",
            "file-system",
            "hardware",
            "runtime-opaque",
            "storage-opaque",
            "sourced-data",
        }
        assert "sample" in claims["submods"]["cpu0"]["ear.veraison.annotated-evidence"]
        with pytest.raises(KbsClientError) as denied:
            client.get_resource("default/key/1")
        assert denied.value.variant == "PolicyDeny", "trustee's default resource policy denies the sample TEE"
    with AdminClient(server.url) as admin:
        admin.set_resource_policy((DATA / "trustee_kbs_resource_policy_allow_all.rego").read_text())
    with KbsClient(server.url, SampleAttester()) as client:
        assert client.get_resource("default/key/1") == b"secret"
    with AdminClient(server.url) as admin:
        admin.set_resource_policy((DATA / "trustee_kbs_resource_policy_deny_all.rego").read_text())
    with KbsClient(server.url, SampleAttester()) as client, pytest.raises(KbsClientError, match="PolicyDeny"):
        client.get_resource("default/key/1")


def test_sample_tee_is_off_unless_enabled(kbs_factory: Callable[..., KbsProcess]) -> None:
    from sealpod.tee.sample import SampleAttester

    server = kbs_factory()
    with (
        KbsClient(server.url, SampleAttester()) as client,
        pytest.raises(KbsClientError, match="'sample' TEE is disabled"),
    ):
        client.attest()


def test_the_documented_config_parses_and_bad_keys_are_named(tmp_path: Path) -> None:
    from sealpod.errors import UsageError
    from sealpod.kbs.config import load_config

    documented = Path(__file__).parent.parent.parent / "src/sealpod/deploy/kbs.toml"
    config = load_config(documented)
    assert config.http.listen == "127.0.0.1:8080"
    assert config.admin.insecure is False
    assert config.attestation.allow_sim is False
    bad = tmp_path / "bad.toml"
    bad.write_text("[attestation]\nallow_simulation = true\n")
    with pytest.raises(UsageError, match=r"attestation\.allow_simulation"):
        load_config(bad)
