"""Edges of the KBS's wire: a key twice in a message, an over-long resource name, a body that never arrives, and
an admin token on the TEE's resource endpoint (trustee releases resources to attested TEEs only, encrypted)."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.asymmetric import ed25519

from sealpod.kbs.client.admin import AdminClient
from sealpod.kbs.client.protocol import PROTOCOL_VERSION
from sealpod.kbs.client.rcar import KbsClient
from sealpod.kbs.service.admin_auth import mint_token
from sealpod.tee.sim import SimPlatform
from tests.kbs.conftest import MRE, MRS, KbsProcess, error_of
from tests.kbs.test_admin_and_storage import admin_keys  # noqa: F401 - the fixture


def test_a_key_given_twice_is_refused_in_every_message(kbs_factory: Callable[..., KbsProcess]) -> None:
    server = kbs_factory()
    twice = b'{"version": "%s", "tee": "sample", "tee": "sgx", "extra-params": ""}' % PROTOCOL_VERSION.encode()
    status, variant, detail = error_of(httpx.post(f"{server.url}/kbs/v0/auth", content=twice))
    assert (status, variant) == (401, "InvalidRequest")
    assert "the key 'tee' appears twice" in detail
    surrogate = b'{"version": "%s", "tee": "sgx\\ud800"}' % PROTOCOL_VERSION.encode()
    status, variant, detail = error_of(httpx.post(f"{server.url}/kbs/v0/auth", content=surrogate))
    assert (status, variant) == (401, "InvalidRequest")
    assert "$.tee holds a lone UTF-16 surrogate" in detail
    # and in the admin's messages
    policy = b'{"policy": "YQ", "policy": "Yg"}'
    status, variant, detail = error_of(httpx.post(f"{server.url}/kbs/v0/resource-policy", content=policy))
    assert (status, variant) == (401, "InvalidRequest")
    assert "the key 'policy' appears twice" in detail


def test_a_resource_name_over_255_characters_is_refused(kbs_factory: Callable[..., KbsProcess]) -> None:
    server = kbs_factory()
    long = "a" * 5000
    for url in (f"/kbs/v0/resource/{long}/type/tag", f"/kbs/v0/resource/default/type/{long}"):
        status, variant, detail = error_of(httpx.get(server.url + url))
        assert (status, variant) == (404, "InvalidRequestPath")
        assert "is 5000 characters, over 255" in detail
    with AdminClient(server.url) as admin:
        admin.put_resource("default/type/" + "b" * 255, b"fits")  # the bound itself is allowed


def test_a_body_that_never_arrives_is_timed_out(kbs_factory: Callable[..., KbsProcess]) -> None:
    server = kbs_factory()
    for path in ("/kbs/v0/auth", "/kbs/v0/resource/default/key/x"):
        # the socket's timeout is what fails the test if the server holds the connection
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n{{".encode())
            answer = b""
            while chunk := sock.recv(4096):  # until the server closes the connection
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert httpx.get(f"{server.url}/healthz").status_code == 200  # and the server serves on


def test_an_admin_token_does_not_read_a_resource_without_attestation(
    kbs_factory: Callable[..., KbsProcess],
    admin_keys: tuple[ed25519.Ed25519PrivateKey, Path],  # noqa: F811 - the fixture
    tmp_path: Path,
) -> None:
    key, public = admin_keys
    server = kbs_factory(admin="jwt", admin_key=public)
    token = mint_token(key)
    with AdminClient(server.url, token) as admin:
        admin.put_resource("default/key/1", b"secret")
        register_enclave_with(server, token)
        assert admin.get_resource("default/key/1") == b"secret"  # on the admin's own endpoint
    bearer = {"Authorization": f"Bearer {token}"}
    status, variant, detail = error_of(httpx.get(f"{server.url}/kbs/v0/resource/default/key/1", headers=bearer))
    assert (status, variant) == (401, "TokenVerifierError")
    assert "an admin token is not an attestation token" in detail
    # an attested TEE gets it (encrypted to its key), and its token is no admin's
    tee = SimPlatform.load(tmp_path / "sim").attester(mr_enclave=MRE, mr_signer=MRS)
    with KbsClient(server.url, tee) as client:
        assert client.get_resource("default/key/1") == b"secret"
        tee_bearer = {"Authorization": f"Bearer {client.attest()}"}
    refused = httpx.get(f"{server.url}/kbs/v0/admin/resource/default/key/1", headers=tee_bearer)
    assert refused.status_code == 401
    assert b"secret" not in refused.content


def register_enclave_with(server: KbsProcess, token: str) -> None:
    """The test enclave's reference values, set with the admin's token."""
    with AdminClient(server.url, token) as admin:
        admin.set_reference({"mr_enclave": [MRE.hex()], "mr_signer": [MRS.hex()], "isv_prod_id": [0], "isv_svn": [0]})
