"""Attestations recorded in groups (one transaction per event-loop step): concurrent handshakes each get their
own token, a duplicate in one group is recorded once, a failed commit answers every request of its group with the
store's error and records none of them, and while another writer holds the store a group waits without stalling the
worker."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from sealpod._internal.jose import public_jwk
from sealpod.kbs.client.protocol import PROTOCOL_VERSION
from sealpod.kbs.service.storage import Session, StoreBusy, open_storage
from sealpod.kbs.serving import group_commit
from sealpod.kbs.serving.group_commit import GroupCommit, Outcome
from sealpod.tee.sim import SimPlatform
from tests.kbs.conftest import KbsProcess, error_of, register_enclave
from tests.kbs.test_fast_path_and_caches import _attest_body, _raw_exchange

_SESSIONS = (
    "CREATE TABLE sessions (id TEXT PRIMARY KEY, nonce TEXT NOT NULL, tee TEXT NOT NULL, "
    "expires BIGINT NOT NULL, token TEXT, evidence_digest TEXT)"
)


async def _attest_all(url: str, sim: SimPlatform, sessions: int, duplicate: bool = False) -> list[httpx.Response]:
    """``sessions`` handshakes up to /attest, the attestations sent at once, each on its own connection (with
    ``duplicate``, the first session's attestation is sent twice)."""
    clients = [httpx.AsyncClient(base_url=url, timeout=30) for _ in range(sessions + duplicate)]
    try:
        bodies: list[tuple[dict[str, Any], str]] = []
        for client in clients[:sessions]:
            auth = await client.post("/kbs/v0/auth", json={"version": PROTOCOL_VERSION, "tee": "sgx"})
            jwk = public_jwk(ec.generate_private_key(ec.SECP256R1()).public_key(), "ECDH-ES+A256KW")
            bodies.append((_attest_body(sim, auth.json()["nonce"], jwk), auth.cookies["kbs-session-id"]))
        if duplicate:
            bodies.append(bodies[0])
        return list(
            await asyncio.gather(
                *(
                    client.post("/kbs/v0/attest", json=body, headers={"Cookie": f"kbs-session-id={cookie}"})
                    for client, (body, cookie) in zip(clients, bodies, strict=True)
                )
            )
        )
    finally:
        for client in clients:
            await client.aclose()


def test_concurrent_attestations_each_get_their_own_token_and_a_duplicate_the_same(
    kbs_factory: Callable[..., KbsProcess], sim: SimPlatform, tmp_path: Path
) -> None:
    server = kbs_factory()
    register_enclave(server.url)
    answers = asyncio.run(_attest_all(server.url, sim, 12, duplicate=True))
    assert [a.status_code for a in answers] == [200] * 13, [a.text for a in answers if a.status_code != 200]
    tokens = [a.json()["token"] for a in answers]
    assert len(set(tokens[:12])) == 12
    assert tokens[12] == tokens[0], "the same evidence twice gets the one recorded token"
    with sqlite3.connect(tmp_path / "kbs.sqlite") as store:
        assert sorted(t for (t,) in store.execute("SELECT token FROM sessions")) == sorted(tokens[:12])


def test_a_failed_group_commit_answers_each_request_with_the_error_and_records_nothing(
    kbs_factory: Callable[..., KbsProcess], sim: SimPlatform, tmp_path: Path
) -> None:
    server = kbs_factory()
    register_enclave(server.url)
    with sqlite3.connect(tmp_path / "kbs.sqlite") as store:
        store.execute("DROP TABLE sessions")  # the store fails every session write from now on
    answers = asyncio.run(_attest_all(server.url, sim, 4))
    for answer in answers:
        status, variant, detail = error_of(answer)
        assert (status, variant) == (401, "PluginInternalError"), answer.text
        assert "KBS storage error: no such table: sessions" in detail
    with sqlite3.connect(tmp_path / "kbs.sqlite") as store:
        store.execute(_SESSIONS)
        assert store.execute("SELECT COUNT(*) FROM sessions").fetchone() == (0,)
    again = asyncio.run(_attest_all(server.url, sim, 2))  # the same server goes on once its store does
    assert [a.status_code for a in again] == [200, 200], [a.text for a in again]


def _raw_attestation(server: KbsProcess, sim: SimPlatform) -> bytes:
    """A new session's whole POST /attest request, as bytes for a socket."""
    auth = httpx.post(f"{server.url}/kbs/v0/auth", json={"version": PROTOCOL_VERSION, "tee": "sgx"})
    jwk = public_jwk(ec.generate_private_key(ec.SECP256R1()).public_key(), "ECDH-ES+A256KW")
    body = json.dumps(_attest_body(sim, auth.json()["nonce"], jwk)).encode()
    cookie = f"kbs-session-id={auth.cookies['kbs-session-id']}".encode()
    return b"POST /kbs/v0/attest HTTP/1.1\r\nHost: x\r\nCookie: %s\r\nContent-Length: %d\r\n\r\n%s" % (
        cookie,
        len(body),
        body,
    )


def test_requests_pipelined_behind_an_attestation_are_answered_after_it_in_order(
    kbs_factory: Callable[..., KbsProcess], sim: SimPlatform
) -> None:
    server = kbs_factory()
    register_enclave(server.url)
    attest = _raw_attestation(server, sim)
    auth_body = json.dumps({"version": PROTOCOL_VERSION, "tee": "sgx"}).encode()
    another = b"POST /kbs/v0/auth HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(auth_body), auth_body)
    health = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    # one write: the attestation waits for its group commit; what follows it must not overtake it
    answer = _raw_exchange(server, attest + another + health + attest)
    assert answer.count(b"HTTP/1.1 200 OK\r\n") == 4, answer[:400]
    token, nonce, status = answer.index(b'{"token":'), answer.index(b'"nonce":'), answer.index(b'"status":"ok"')
    assert token < nonce < status < answer.rindex(b'{"token":'), "answered in the order asked"
    # the same evidence again on the same session: the one recorded token
    tokens = [part.split(b'"')[0] for part in answer.split(b'{"token":"')[1:]]
    assert tokens[0] == tokens[1]


def test_a_client_gone_before_its_attestation_is_answered_costs_nothing_else(
    kbs_factory: Callable[..., KbsProcess], sim: SimPlatform, tmp_path: Path
) -> None:
    import socket

    server = kbs_factory()
    register_enclave(server.url)
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(_raw_attestation(server, sim))
    again = asyncio.run(_attest_all(server.url, sim, 3))
    assert [a.status_code for a in again] == [200] * 3, [a.text for a in again]
    # the gone client's attestation was read, recorded and its answer dropped, without an error
    assert "sealpod_kbs_attestations_total 4\n" in httpx.get(f"{server.url}/metrics").text
    assert "Traceback" not in server.log.read_text()


def test_while_another_writer_holds_the_store_attestations_wait_and_the_worker_serves_the_rest(
    kbs_factory: Callable[..., KbsProcess], sim: SimPlatform, tmp_path: Path
) -> None:
    server = kbs_factory()
    register_enclave(server.url)
    auth_request = {"version": PROTOCOL_VERSION, "tee": "sgx"}

    async def scenario() -> None:
        async with (
            httpx.AsyncClient(base_url=server.url, timeout=10) as client,
            httpx.AsyncClient(base_url=server.url, timeout=10) as other,
        ):
            auth = await client.post("/kbs/v0/auth", json=auth_request)
            jwk = public_jwk(ec.generate_private_key(ec.SECP256R1()).public_key(), "ECDH-ES+A256KW")
            body = _attest_body(sim, auth.json()["nonce"], jwk)
            cookie = {"Cookie": f"kbs-session-id={auth.cookies['kbs-session-id']}"}
            blocker = sqlite3.connect(tmp_path / "kbs.sqlite", isolation_level=None, timeout=10)
            blocker.execute("BEGIN IMMEDIATE")  # another process's writer holds the store
            try:
                attest = asyncio.create_task(client.post("/kbs/v0/attest", json=body, headers=cookie))
                await asyncio.sleep(0.3)
                assert not attest.done(), "recorded while another writer held the store?"
                # the worker is not stuck in the store's busy loop: it answers others meanwhile
                assert (await other.post("/kbs/v0/auth", json=auth_request)).status_code == 200
                metrics = (await other.get("/metrics")).text
                waits = [line for line in metrics.splitlines() if line.startswith("sealpod_kbs_session_group_commit_w")]
                assert waits, metrics
                assert int(waits[0].split()[1]) > 0
            finally:
                blocker.execute("COMMIT")
                blocker.close()
            answer = await attest
            assert answer.status_code == 200, answer.text
            assert answer.json()["token"]

    asyncio.run(scenario())
    with sqlite3.connect(tmp_path / "kbs.sqlite") as store:
        assert store.execute("SELECT count(*) FROM sessions").fetchone()[0] == 1


def test_a_group_that_waits_past_the_busy_limit_fails_with_the_stores_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(group_commit, "BUSY_WAIT", 0.05)
    storage = open_storage(f"sqlite://{tmp_path / 'kbs.sqlite'}")
    counters: Counter[str] = Counter()
    commits = GroupCommit(storage, counters)
    blocker = sqlite3.connect(tmp_path / "kbs.sqlite", isolation_level=None, timeout=10)
    expires = int(time.time()) + 60

    async def record(session_id: str) -> Outcome:
        done: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        commits.record(Session(session_id, "n", "sgx", expires, "t", "d"), done.set_result)
        return await done

    try:
        blocker.execute("BEGIN IMMEDIATE")
        outcome = asyncio.run(record("late"))
        assert isinstance(outcome, StoreBusy), outcome
        assert "another writer holds the SQLite store" in str(outcome)
        assert counters["session_group_commit_waits"] > 1
        blocker.execute("COMMIT")
        assert storage.get_session("late") is None, "nothing of a failed group is recorded"
        assert asyncio.run(record("later")) is True, "the next group, with the store free, is recorded"
    finally:
        blocker.close()
        storage.close()
