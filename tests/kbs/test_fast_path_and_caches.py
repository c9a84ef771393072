"""The raw ASGI fast path for the handshake and the per-process caches in front of the store: a session cached by
one process does not let a second attestation of its nonce through on another, and answers stay those of the
Starlette routes."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from sealpod._internal.jose import public_jwk
from sealpod.kbs.client import resource_jwe
from sealpod.kbs.client.admin import AdminClient
from sealpod.kbs.client.protocol import PROTOCOL_VERSION, report_data
from sealpod.kbs.service.caches import IssuedTokens, SessionCache
from sealpod.kbs.service.storage import Session
from sealpod.kbs.service.storage.admin_signal import RECHECK
from sealpod.tee.sim import SimPlatform
from tests.kbs.conftest import MRE, MRS, KbsProcess, error_of, register_enclave


def _attest_body(sim: SimPlatform, nonce: str, jwk: dict[str, Any]) -> dict[str, Any]:
    quote = sim.quote(report_data=report_data(nonce, jwk), mr_enclave=MRE, mr_signer=MRS)
    return {
        "runtime-data": {"nonce": nonce, "tee-pubkey": jwk},
        "tee-evidence": {"primary_evidence": {"quote": base64.b64encode(quote).decode()}, "additional_evidence": ""},
    }


def test_one_attestation_per_nonce_across_two_processes(
    kbs_factory: Callable[..., KbsProcess], sim: SimPlatform
) -> None:
    first = kbs_factory(name="first")
    second = kbs_factory(name="second")  # the same SQLite store
    register_enclave(first.url)
    with AdminClient(first.url) as admin:
        admin.put_resource("default/key/1", b"secret")
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = public_jwk(key.public_key(), "ECDH-ES+A256KW")
    auth = httpx.post(f"{first.url}/kbs/v0/auth", json={"version": PROTOCOL_VERSION, "tee": "sgx"})
    cookie = {"Cookie": f"kbs-session-id={auth.cookies['kbs-session-id']}"}
    nonce = auth.json()["nonce"]  # the first process issued it and stored nothing

    evidence = _attest_body(sim, nonce, jwk)
    won = httpx.post(f"{second.url}/kbs/v0/attest", json=evidence, headers=cookie)
    assert won.status_code == 200, won.text

    # fresh, valid evidence for the same nonce, sent to the process that issued the nonce and has no record of it
    replay = httpx.post(f"{first.url}/kbs/v0/attest", json=_attest_body(sim, nonce, jwk), headers=cookie)
    assert error_of(replay)[:2] == (401, "AttestationError")
    assert "already attested with other evidence" in error_of(replay)[2]
    again = httpx.post(f"{first.url}/kbs/v0/attest", json=evidence, headers=cookie)
    assert again.json()["token"] == won.json()["token"], "the same evidence gets the recorded token"
    replay_second = httpx.post(f"{second.url}/kbs/v0/attest", json=_attest_body(sim, nonce, jwk), headers=cookie)
    assert "already attested" in error_of(replay_second)[2]

    # the first process learns the session's token from the store for a cookie-only resource request
    resource = httpx.get(f"{first.url}/kbs/v0/resource/default/key/1", headers=cookie)
    assert resource.status_code == 200, resource.text
    assert resource_jwe.decrypt(resource.json(), key) == b"secret"
    # a token signed by the other process is verified in full, and works
    bearer = {"Authorization": f"Bearer {won.json()['token']}"}
    assert httpx.get(f"{first.url}/kbs/v0/resource/default/key/1", headers=bearer).status_code == 200


def test_fast_path_answers_as_the_routes_do(kbs_factory: Callable[..., KbsProcess]) -> None:
    server = kbs_factory()
    assert error_of(httpx.get(f"{server.url}/kbs/v0/resource/default/key/"))[:2] == (404, "InvalidRequestPath")
    assert error_of(httpx.get(f"{server.url}/kbs/v0/resource/a/b/c/d"))[:2] == (404, "InvalidRequestPath")
    assert error_of(httpx.get(f"{server.url}/kbs/v0/resource/a/b/.c"))[:2] == (404, "InvalidRequestPath")
    assert httpx.get(f"{server.url}/kbs/v0/auth").status_code == 405
    malformed = httpx.post(f"{server.url}/kbs/v0/auth", content=b"{not json")
    assert error_of(malformed)[:2] == (401, "InvalidRequest")
    too_big = httpx.post(f"{server.url}/kbs/v0/attest", content=b" " * (3 * 1024 * 1024))
    assert error_of(too_big)[:2] == (413, "InvalidRequest")
    auth = httpx.post(f"{server.url}/kbs/v0/auth", json={"version": PROTOCOL_VERSION, "tee": "sgx"})
    assert auth.status_code == 200
    assert auth.headers["content-type"] == "application/json"
    assert auth.headers["set-cookie"].endswith("; Path=/kbs; HttpOnly")
    with AdminClient(server.url) as admin:
        admin.put_resource("default/key/plain", b"\x00raw")
    # as trustee: the resource GET is for attested TEEs only, even in insecure admin mode
    anonymous = httpx.get(f"{server.url}/kbs/v0/resource/default/key/plain")
    assert error_of(anonymous)[:2] == (401, "TokenNotFound")
    plain = httpx.get(f"{server.url}/kbs/v0/admin/resource/default/key/plain")  # the admin's own endpoint
    assert (plain.content, plain.headers["content-type"]) == (b"\x00raw", "application/octet-stream")
    metrics = httpx.get(f"{server.url}/metrics").text
    assert "sealpod_kbs_requests_auth_total 2" in metrics  # the 405 is Starlette's, before any handler
    assert "sealpod_kbs_requests_resource_total 3" in metrics  # with the admin's POST
    assert "sealpod_kbs_errors_InvalidRequestPath_total 1" in metrics  # unmatched paths are Starlette's 404s


def test_session_cache_forgets_expired_sessions() -> None:
    cache = SessionCache(size=2)
    cache.put(Session("a", "n", "sgx", 100, None, None))
    assert cache.get("a", now=100) is not None
    assert cache.get("a", now=101) is None
    for name in "bcd":
        cache.put(Session(name, "n", "sgx", 100, None, None))
    assert cache.get("b", now=0) is None, "bounded: the oldest goes"


def test_issued_tokens_are_checked_for_expiry() -> None:
    from sealpod._internal.jose import JoseError
    from sealpod.attestation import ear

    key = ec.generate_private_key(ec.SECP256R1())
    token, claims = ear.issue(
        key, issuer="i", policy_id="p", vector={"executables": 2}, annotated_evidence={}, now=1000, lifetime=10
    )
    assert ear.verify(token, key.public_key(), now=1005) == claims
    issued = IssuedTokens()
    issued.put(token, claims, key.public_key())
    hit = issued.get(token)
    assert hit is not None
    assert ear.check_expiry(hit.claims, now=1010) is claims
    with pytest.raises(JoseError, match="expired"):
        ear.check_expiry(hit.claims, now=1011)
    tampered = token[:-2] + ("BB" if token.endswith("AA") else "AA")  # the signature ends in AA one time in 4,096
    assert issued.get(tampered) is None


def _raw_exchange(server: KbsProcess, data: bytes) -> bytes:
    """Send ``data`` on one connection; everything the server sends until it closes or goes quiet."""
    import socket

    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(data)
        sock.settimeout(1.0)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except TimeoutError:
            pass
        return received


def test_fast_lane_keeps_http_semantics(kbs_factory: Callable[..., KbsProcess]) -> None:
    server = kbs_factory()
    auth = json.dumps({"version": PROTOCOL_VERSION, "tee": "sgx"}).encode()
    post = b"POST /kbs/v0/auth HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(auth), auth)
    # pipelined: a fast request, an ASGI one, a fast one; answered in order on the kept-alive connection
    answer = _raw_exchange(server, post + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" + post)
    assert answer.count(b"HTTP/1.1 ") == answer.count(b"HTTP/1.1 200 OK\r\n") == 3
    assert answer.index(b'"status":"ok"') < answer.rindex(b"set-cookie: kbs-session-id=")
    assert answer.count(b"set-cookie: kbs-session-id=") == 2
    # HTTP/1.0 and Connection: close end the connection after the answer
    for request in (
        post.replace(b"HTTP/1.1", b"HTTP/1.0"),
        post.replace(b"Host: x\r\n", b"Host: x\r\nConnection: close\r\n"),
    ):
        answer = _raw_exchange(server, request + post)
        assert answer.count(b" 200 OK\r\n") == 1, "nothing is answered after the close"
        assert b"connection: close\r\n" in answer
    # Expect: 100-continue goes the ASGI way, which sends the interim response
    expect = post.replace(b"Host: x\r\n", b"Host: x\r\nExpect: 100-continue\r\n")
    answer = _raw_exchange(server, expect)
    assert b"HTTP/1.1 100 Continue" in answer
    assert b"set-cookie: kbs-session-id=" in answer
    # a body over the limit is refused after it is read, and the connection stays usable
    big = b"POST /kbs/v0/attest HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (3 * 1024 * 1024)
    answer = _raw_exchange(server, big + b" " * (3 * 1024 * 1024) + post)
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert answer.count(b"set-cookie: kbs-session-id=") == 1


def test_admin_changes_reach_the_other_process_at_once(
    kbs_factory: Callable[..., KbsProcess], sim: SimPlatform, tmp_path: Path
) -> None:
    import sqlite3

    first = kbs_factory(name="first")
    second = kbs_factory(name="second")  # the same SQLite store; it caches what requests read of the admin's data
    register_enclave(first.url)
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = public_jwk(key.public_key(), "ECDH-ES+A256KW")

    def fetch() -> httpx.Response:
        auth = httpx.post(f"{second.url}/kbs/v0/auth", json={"version": PROTOCOL_VERSION, "tee": "sgx"})
        cookie = {"Cookie": f"kbs-session-id={auth.cookies['kbs-session-id']}"}
        body = _attest_body(sim, auth.json()["nonce"], jwk)
        token = httpx.post(f"{second.url}/kbs/v0/attest", json=body, headers=cookie).json()["token"]
        bearer = {"Authorization": f"Bearer {token}"}
        return httpx.get(f"{second.url}/kbs/v0/resource/default/key/1", headers=bearer)

    with AdminClient(first.url) as admin:
        admin.put_resource("default/key/1", b"one")
        assert resource_jwe.decrypt(fetch().json(), key) == b"one"
        admin.put_resource("default/key/1", b"two")
        assert resource_jwe.decrypt(fetch().json(), key) == b"two"
        # a writer without this code (an older KBS, sqlite3 by hand) does not move the shared signal: the
        # database's triggers count the change, and a cache checks that counter at least every RECHECK seconds
        with sqlite3.connect(tmp_path / "kbs.sqlite") as raw:
            raw.execute("UPDATE resources SET data = ? WHERE path = 'default/key/1'", (b"three",))
        changed = time.monotonic()
        while resource_jwe.decrypt(fetch().json(), key) != b"three":
            assert time.monotonic() - changed < RECHECK + 2, "the raw write was not seen within RECHECK"
            time.sleep(0.05)
        admin.set_resource_policy("package policy\nimport rego.v1\ndefault allow := false\n")
        assert error_of(fetch())[1] == "PolicyDeny"
        admin.set_resource_policy("package policy\nimport rego.v1\ndefault allow := true\n")
        assert fetch().status_code == 200
        admin.set_reference({"mr_enclave": ["00" * 32]})  # this enclave is no longer a reference value
        admin.set_resource_policy(
            'package policy\nimport rego.v1\ndefault allow := false\nallow if input.submods.cpu0["ear.status"] '
            '== "affirming"\n'
        )
        assert error_of(fetch())[1] == "PolicyDeny"
        with sqlite3.connect(tmp_path / "kbs.sqlite") as raw:
            raw.execute("DELETE FROM resources")
        register_enclave(first.url)
        assert error_of(fetch())[1] == "PluginInternalError"


def test_auth_writes_nothing_and_only_an_attested_session_is_stored(
    kbs_factory: Callable[..., KbsProcess], sim: SimPlatform, tmp_path: Path
) -> None:
    import sqlite3

    server = kbs_factory()
    register_enclave(server.url)
    store = sqlite3.connect(tmp_path / "kbs.sqlite")
    try:
        for _ in range(50):  # an /auth flood fills nothing
            assert httpx.post(f"{server.url}/kbs/v0/auth", json={"version": PROTOCOL_VERSION, "tee": "sgx"}).is_success
        assert store.execute("SELECT COUNT(*) FROM sessions").fetchone() == (0,)
        auth = httpx.post(f"{server.url}/kbs/v0/auth", json={"version": PROTOCOL_VERSION, "tee": "sgx"})
        session_id = auth.cookies["kbs-session-id"]
        jwk = public_jwk(ec.generate_private_key(ec.SECP256R1()).public_key(), "ECDH-ES+A256KW")
        attest = httpx.post(
            f"{server.url}/kbs/v0/attest",
            json=_attest_body(sim, auth.json()["nonce"], jwk),
            headers={"Cookie": f"kbs-session-id={session_id}"},
        )
        assert attest.status_code == 200, attest.text
        rows = store.execute("SELECT id, tee, token FROM sessions").fetchall()
        assert rows == [(session_id, "sgx", attest.json()["token"])]
    finally:
        store.close()
