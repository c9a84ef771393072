"""trustee's own ``kbs-client`` (and guest-components' ``kbs_protocol`` inside it) against ``sealpod kbs serve``.

The requests are what that client sent to sealpod's KBS on loopback (tests/data/kbs/trustee_kbs_client/PROVENANCE.md):
the admin requests replay byte for byte; the RCAR handshake keeps the client's message layout (composite evidence,
init-data, hash algorithm, EC TEE key) and only takes this run's nonce and a key the test holds, since a replayed
nonce must be and is refused."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from sealpod._internal.jose import decode_jws
from sealpod.kbs.client.admin import AdminClient
from sealpod.kbs.client.resource_jwe import decrypt
from tests.kbs.conftest import KbsProcess, error_of

DATA = Path(__file__).parent.parent / "data" / "kbs" / "trustee_kbs_client"


def requests_in(stream: bytes) -> list[tuple[str, str, dict[str, str], bytes]]:
    """The HTTP/1.1 requests one connection carried: (method, path, headers, body)."""
    found = []
    while stream:
        head, _, rest = stream.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        found.append((method, path, headers, rest[:length]))
        stream = rest[length:]
    return found


def captured(name: str) -> list[tuple[str, str, dict[str, str], bytes]]:
    return requests_in((DATA / name).read_bytes())


def admin_token() -> str:
    return captured("admin-set-resource.request")[0][2]["authorization"].removeprefix("Bearer ")


def replay_admin(server: KbsProcess) -> None:
    for name in ("admin-set-resource", "admin-set-resource-policy", "admin-set-attestation-policy"):
        ((method, path, headers, body),) = captured(f"{name}.request")
        keep = {k: v for k, v in headers.items() if k in ("content-type", "authorization", "user-agent", "accept")}
        response = httpx.request(method, server.url + path, headers=keep, content=body, timeout=10)
        assert response.status_code == 200, (name, response.text)


def test_kbs_client_admin_requests_set_what_they_say(kbs_factory: Callable[..., KbsProcess]) -> None:
    server = kbs_factory(admin="jwt", admin_key=DATA / "admin-public.pub", allow_sample=True)
    replay_admin(server)
    with AdminClient(server.url, admin_token()) as admin:
        assert admin.get_resource("default/test/dummy") == (DATA / "secret.txt").read_bytes()
        assert 'plugin == "resource"' in admin.get_resource_policy()
        assert "input.sample.launch_digest" in admin.get_attestation_policy("default_cpu")
    ((_method, path, headers, _body),) = captured("admin-set-resource.request")
    forged = headers["authorization"][:-4] + ("AAAA" if not headers["authorization"].endswith("AAAA") else "BBBB")
    refused = httpx.post(server.url + path, headers={"authorization": forged}, content=b"x", timeout=10)
    assert error_of(refused)[1] == "AdminAuthAccess"


def client_messages(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The auth and attest bodies of a captured get-resource conversation."""
    bodies = {path: body for _, path, _, body in captured(name) if body}
    return json.loads(bodies["/kbs/v0/auth"]), json.loads(bodies["/kbs/v0/attest"])


def fresh_attest(template: dict[str, Any], nonce: str, key: ec.EllipticCurvePrivateKey) -> dict[str, Any]:
    """The client's attest message for this run's nonce and ``key``, report data as kbs_protocol computes it."""
    numbers = key.public_key().public_numbers()
    message = json.loads(json.dumps(template))
    pubkey = message["runtime-data"]["tee-pubkey"]
    pubkey["x"] = base64.urlsafe_b64encode(numbers.x.to_bytes(32, "big")).rstrip(b"=").decode()
    pubkey["y"] = base64.urlsafe_b64encode(numbers.y.to_bytes(32, "big")).rstrip(b"=").decode()
    message["runtime-data"]["nonce"] = nonce
    bound = {"additional-evidence": "", "nonce": nonce, "tee-pubkey": pubkey}
    digest = hashlib.sha384(json.dumps(bound, sort_keys=True, separators=(",", ":")).encode()).digest()
    message["tee-evidence"]["primary_evidence"]["report_data"] = base64.b64encode(digest).decode()
    return message


@pytest.mark.parametrize("conversation", ["get-resource-init-data.request", "get-resource.request"])
def test_kbs_client_handshake_gets_the_resource(kbs_factory: Callable[..., KbsProcess], conversation: str) -> None:
    server = kbs_factory(admin="jwt", admin_key=DATA / "admin-public.pub", allow_sample=True)
    replay_admin(server)
    with AdminClient(server.url, admin_token()) as admin:
        admin.set_reference({"svn": ["1"], "launch_digest": ["abcde"]})
    auth, attest = client_messages(conversation)
    assert auth["tee"] == "sample"
    assert attest["tee-evidence"]["primary_evidence"]["svn"] == "1"
    with httpx.Client(base_url=server.url, timeout=10) as http:
        challenge = http.post("/kbs/v0/auth", json=auth)
        assert challenge.status_code == 200, challenge.text
        replayed = http.post("/kbs/v0/attest", json=attest)
        assert error_of(replayed)[1] == "AttestationError"
        assert "nonce" in error_of(replayed)[2]
    key = ec.generate_private_key(ec.SECP256R1())
    with httpx.Client(base_url=server.url, timeout=10) as http:
        nonce = http.post("/kbs/v0/auth", json=auth).json()["nonce"]
        token = http.post("/kbs/v0/attest", json=fresh_attest(attest, nonce, key))
        assert token.status_code == 200, token.text
        sealed = http.get("/kbs/v0/resource/default/test/dummy")
        assert sealed.status_code == 200, sealed.text
    assert decrypt(sealed.json(), key) == (DATA / "secret.txt").read_bytes()
    evidence = decode_jws(token.json()["token"])[1]["submods"]["cpu0"]
    # trustee's ear_sample.rego (the policy kbs-client set) on trustee's sample claims (launch_digest "abcde")
    vector = evidence["ear.trustworthiness-vector"]
    assert vector["executables"] == 3, vector
    assert evidence["ear.appraisal-policy-id"] == "default_cpu"
    annotated = evidence["ear.veraison.annotated-evidence"]
    if attest.get("init-data"):
        body = attest["init-data"]["body"].encode()
        assert annotated["sample"]["init_data"] == base64.b64encode(hashlib.sha256(body).digest()).decode()
        assert annotated["init_data_claims"] == {"policy.rego": "package agent_policy"}
    else:
        assert "init_data" not in annotated["sample"]


def test_kbs_client_response_layout_is_what_sealpod_sends() -> None:
    """What kbs-client accepted from sealpod: the challenge and the EAR token's shape (kept as a regression guard)."""
    stream = (DATA / "get-resource-init-data.response").read_text(errors="replace")
    challenge = json.loads(re.search(r'(\{"nonce":[^}]*\})', stream).group(1))  # type: ignore[union-attr]
    assert set(challenge) == {"nonce", "extra-params"}
    assert len(base64.b64decode(challenge["nonce"])) == 32
    token = re.search(r'"token":"([^"]+)"', stream).group(1)  # type: ignore[union-attr]
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header["alg"] == "ES256"
    assert header["jwk"]["crv"] == "P-256"


def test_sample_evidence_without_a_string_svn_is_refused(kbs_factory: Callable[..., KbsProcess]) -> None:
    server = kbs_factory(allow_sample=True)
    auth, attest = client_messages("get-resource.request")
    with httpx.Client(base_url=server.url, timeout=10) as http:
        nonce = http.post("/kbs/v0/auth", json=auth).json()["nonce"]
        message = fresh_attest(attest, nonce, ec.generate_private_key(ec.SECP256R1()))
        message["tee-evidence"]["primary_evidence"]["svn"] = 1
        refused = http.post("/kbs/v0/attest", json=message)
    assert error_of(refused)[1] == "AttestationError"
    assert "svn and report_data strings" in error_of(refused)[2]
