"""sealpod's KBS clients against trustee's own KBS (tests/data/kbs/trustee_kbs/PROVENANCE.md).

trustee's answers to sealpod's ``AdminClient`` and ``KbsClient`` were captured on the wire; here a loopback server
gives them back in order, so that CI checks that sealpod reads trustee's challenge, token, resource JWE and refusals
without the Rust program. The TEE key of that run is kept, so the resource decrypts as it did against trustee."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sealpod.kbs.client.admin import AdminClient
from sealpod.kbs.client.rcar import KbsClient, KbsClientError
from sealpod.tee.sample import SampleAttester
from tests.kbs.test_trustee_kbs_client import requests_in

DATA = Path(__file__).parent.parent / "data" / "kbs" / "trustee_kbs"
NO_MORE = b"HTTP/1.1 500 No More\r\ncontent-length: 0\r\n\r\n"
ADMIN_TOKEN = "eyJhbGciOiJFZERTQSJ9.e30.c2ln"  # trustee checked the real one; a replay has nothing to check it with


def responses_in(stream: bytes) -> list[bytes]:
    """The HTTP/1.1 responses one connection carried, each whole (every one of trustee's has a Content-Length)."""
    found = []
    while stream:
        head, _, rest = stream.partition(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
        )
        found.append(head + b"\r\n\r\n" + rest[:length])
        stream = rest[length:]
    return found


class Replay:
    """A loopback server answering each request with trustee's next captured response, checking the method and path
    are those sealpod sent to trustee."""

    def __init__(self, name: str) -> None:
        self.expected = [(m, p) for m, p, _, _ in requests_in((DATA / f"sealpod-{name}.request").read_bytes())]
        self.answers = responses_in((DATA / f"trustee-{name}.response").read_bytes())
        self.seen: list[tuple[str, str]] = []
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as reader:
            while line := reader.readline():
                method, path, _ = line.decode().split(" ", 2)
                length = 0
                while (header := reader.readline()) not in (b"\r\n", b""):
                    if header.lower().startswith(b"content-length:"):
                        length = int(header.split(b":", 1)[1])
                reader.read(length)
                with self.lock:
                    self.seen.append((method, path))
                    answer = self.answers.pop(0) if self.answers else NO_MORE
                conn.sendall(answer)

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def replay() -> Iterator[Callable[[str], Replay]]:
    started: list[Replay] = []

    def make(name: str) -> Replay:
        server = Replay(name)
        started.append(server)
        return server

    yield make
    for server in started:
        server.close()


def tee_key() -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key((DATA / "tee-key.pem").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def test_sealpod_admin_client_takes_trustees_answers(replay: Callable[[str], Replay]) -> None:
    server = replay("admin")
    with AdminClient(server.url, ADMIN_TOKEN) as admin:
        admin.put_resource("default/test/dummy", (DATA / "secret.txt").read_bytes())
        admin.set_resource_policy("package policy\ndefault allow = true\n")
        admin.set_attestation_policy("package policy\n")
    assert server.seen == server.expected


def test_sealpod_kbs_client_decrypts_trustees_resource(replay: Callable[[str], Replay]) -> None:
    server = replay("get-resource")
    with KbsClient(server.url, SampleAttester(), key=tee_key(), retries=1) as client:
        assert client.get_resource("kbs:///default/test/dummy") == (DATA / "secret.txt").read_bytes()
    assert (
        server.seen
        == server.expected
        == [
            ("POST", "/kbs/v0/auth"),
            ("POST", "/kbs/v0/attest"),
            ("GET", "/kbs/v0/resource/default/test/dummy"),
        ]
    )


def test_trustees_resource_does_not_decrypt_for_another_key(replay: Callable[[str], Replay]) -> None:
    server = replay("get-resource")
    with (
        KbsClient(server.url, SampleAttester(), key=ec.generate_private_key(ec.SECP256R1()), retries=1) as client,
        pytest.raises(KbsClientError, match="does not decrypt"),
    ):
        client.get_resource("kbs:///default/test/dummy")


def test_trustees_policy_refusal_is_named(replay: Callable[[str], Replay]) -> None:
    server = replay("get-resource-denied")
    with (
        KbsClient(server.url, SampleAttester(), retries=1) as client,
        pytest.raises(KbsClientError, match=r"401 PolicyDeny\): Access denied by policy"),
    ):
        client.get_resource("kbs:///default/test/dummy")
