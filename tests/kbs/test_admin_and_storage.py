"""Admin authentication, the admin CLI, sealed secrets, and the store: durability after kill -9 (SQLite and
PostgreSQL) and two KBS processes sharing one PostgreSQL."""

from __future__ import annotations

import base64
import dataclasses
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from sealpod._internal.jose import sign_es256
from sealpod._internal.net import free_port
from sealpod.kbs.client.admin import AdminClient
from sealpod.kbs.client.rcar import KbsClient, KbsClientError
from sealpod.kbs.client.sealed import SealedSecretError, unseal
from sealpod.kbs.service.admin_auth import mint_token
from sealpod.kbs.service.admin_data import AdminData
from sealpod.kbs.service.storage import _PURGE, PURGE_BATCH, Session, open_storage
from sealpod.kbs.service.storage import postgres as postgres_storage
from sealpod.kbs.service.storage import sqlite as sqlite_storage
from sealpod.tee.sim import SimPlatform
from tests.kbs.conftest import MRE, MRS, SEALPOD, KbsProcess, error_of, register_enclave


@pytest.fixture
def admin_keys(tmp_path: Path) -> tuple[ed25519.Ed25519PrivateKey, Path]:
    key = ed25519.Ed25519PrivateKey.generate()
    public = tmp_path / "admin.pub"
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return key, public


def test_admin_jwt(kbs_factory: Callable[..., KbsProcess], admin_keys: tuple[ed25519.Ed25519PrivateKey, Path]) -> None:
    key, public = admin_keys
    server = kbs_factory(admin="jwt", admin_key=public)
    url = f"{server.url}/kbs/v0/resource/default/key/1"
    assert error_of(httpx.post(url, content=b"x"))[:2] == (401, "AdminAuthAccess")
    stranger = mint_token(ed25519.Ed25519PrivateKey.generate())
    assert (
        "not signed by a configured admin key"
        in error_of(httpx.post(url, content=b"x", headers={"Authorization": f"Bearer {stranger}"}))[2]
    )
    reader = mint_token(key, role="reader")
    assert (
        "may not call it" in error_of(httpx.post(url, content=b"x", headers={"Authorization": f"Bearer {reader}"}))[2]
    )
    expired = mint_token(key, lifetime=-10)
    assert "expired" in error_of(httpx.post(url, content=b"x", headers={"Authorization": f"Bearer {expired}"}))[2]
    with AdminClient(server.url, mint_token(key)) as admin:
        admin.put_resource("default/key/1", b"v1")
        assert admin.get_resource("default/key/1") == b"v1"
        admin.delete_resource("default/key/1")
        with pytest.raises(KbsClientError, match="does not exist"):
            admin.get_resource("default/key/1")


def test_admin_cli(kbs_factory: Callable[..., KbsProcess], tmp_path: Path) -> None:
    server = kbs_factory()
    env = {**os.environ, "SEALPOD_KBS_URL": server.url}

    def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([SEALPOD, "kbs", *map(str, args)], capture_output=True, text=True, env=env, check=False)
        assert proc.returncode == 0, proc.stderr
        return proc

    (tmp_path / "secret").write_bytes(b"cli secret")
    cli("resource", "put", "default/key/cli", tmp_path / "secret")
    assert cli("resource", "get", "default/key/cli").stdout == "cli secret"
    cli("reference", "set", "mr_enclave", MRE.hex(), "0" * 64)
    assert MRE.hex() in cli("reference", "get", "mr_enclave").stdout
    (tmp_path / "allow.rego").write_text("package policy\nimport rego.v1\ndefault allow := true\n")
    cli("policy", "set", tmp_path / "allow.rego")
    assert "default allow := true" in cli("policy", "get").stdout
    cli("resource", "delete", "default/key/cli")
    os.chdir(tmp_path)
    cli("admin-keygen", "--output-prefix", "a")
    token = cli("token", "--key", "a.key").stdout.strip()
    assert token.count(".") == 2


def test_sealed_vault_secret(kbs_factory: Callable[..., KbsProcess], sim: SimPlatform) -> None:
    server = kbs_factory()
    register_enclave(server.url)
    signer = ec.generate_private_key(ec.SECP256R1())
    with AdminClient(server.url) as admin:
        admin.put_resource(
            "default/sealing/pub",
            signer.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
        )
        admin.put_resource("one/2/trois", b"the vaulted secret")
    payload = {
        "version": "0.1.0",
        "type": "vault",
        "name": "kbs:///one/2/trois",
        "provider": "kbs",
        "provider_settings": {},
        "annotations": {},
    }
    sealed = "sealed." + sign_es256(signer, {"alg": "ES256", "kid": "kbs:///default/sealing/pub"}, payload)
    with KbsClient(server.url, sim.attester(mr_enclave=MRE, mr_signer=MRS)) as client:
        assert unseal(sealed, client) == b"the vaulted secret"
        forged = "sealed." + sign_es256(
            ec.generate_private_key(ec.SECP256R1()), {"alg": "ES256", "kid": "kbs:///default/sealing/pub"}, payload
        )
        with pytest.raises(SealedSecretError, match="does not verify"):
            unseal(forged, client)
        envelope = dict(payload, type="envelope")
        with pytest.raises(SealedSecretError, match="not supported"):
            unseal(
                "sealed." + sign_es256(signer, {"alg": "ES256", "kid": "kbs:///default/sealing/pub"}, envelope), client
            )


def _durable(server: KbsProcess, restart: Callable[[], KbsProcess]) -> None:
    with AdminClient(server.url) as admin:
        for i in range(30):
            admin.put_resource(f"default/key/k{i}", f"value {i}".encode())
    server.kill("kill")
    again = restart()
    with AdminClient(again.url) as admin:
        for i in range(30):
            assert admin.get_resource(f"default/key/k{i}") == f"value {i}".encode()


def test_sqlite_survives_kill_9(kbs_factory: Callable[..., KbsProcess]) -> None:
    server = kbs_factory()
    _durable(server, lambda: kbs_factory(name="again"))


@pytest.fixture
def postgres(tmp_path: Path) -> Iterator[str]:
    """A PostgreSQL server in a temp dir on 127.0.0.1 (Debian's postgresql, run as the postgres user)."""
    bindir = next((d for d in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)), None)
    if bindir is None or shutil.which("runuser") is None:
        pytest.fail("PostgreSQL is not installed: run ./setup.sh test")
    base = Path(tempfile.mkdtemp(prefix="sealpod-pg-"))  # pytest's tmp dirs are closed to the postgres user
    base.chmod(0o755)
    data, sockets = base / "pgdata", base / "pgsock"
    sockets.mkdir()
    shutil.chown(sockets, "postgres")
    data.mkdir()
    shutil.chown(data, "postgres")
    port = free_port()
    as_pg = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [*as_pg, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
        check=True,
        capture_output=True,
    )
    log = sockets / "postgres.log"  # not our pipes: run() would wait for the server to close them
    subprocess.run(
        [
            *as_pg,
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(log),
            "-o",
            f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1",
            "-w",
            "start",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*as_pg, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(base, ignore_errors=True)


def test_two_kbs_processes_share_one_postgresql(
    kbs_factory: Callable[..., KbsProcess], postgres: str, sim: SimPlatform
) -> None:
    first = kbs_factory(storage=postgres, name="first")
    second = kbs_factory(storage=postgres, name="second")
    register_enclave(first.url)
    with AdminClient(second.url) as admin:
        admin.put_resource("default/key/shared", b"from either")
    attester = sim.attester(mr_enclave=MRE, mr_signer=MRS)
    from sealpod._internal.jose import public_jwk
    from sealpod.kbs.client.protocol import PROTOCOL_VERSION, report_data

    key = ec.generate_private_key(ec.SECP256R1())
    jwk = public_jwk(key.public_key(), "ECDH-ES+A256KW")
    auth = httpx.post(f"{first.url}/kbs/v0/auth", json={"version": PROTOCOL_VERSION, "tee": "sgx"})
    cookie = auth.cookies["kbs-session-id"]
    nonce = auth.json()["nonce"]
    quote = attester.evidence(report_data(nonce, jwk))
    body = {
        "runtime-data": {"nonce": nonce, "tee-pubkey": jwk},
        "tee-evidence": {"primary_evidence": {"quote": base64.b64encode(quote).decode()}},
    }
    attest = httpx.post(f"{second.url}/kbs/v0/attest", json=body, headers={"Cookie": f"kbs-session-id={cookie}"})
    assert attest.status_code == 200, attest.text
    resource = httpx.get(
        f"{first.url}/kbs/v0/resource/default/key/shared", headers={"Cookie": f"kbs-session-id={cookie}"}
    )
    assert resource.status_code == 200, resource.text
    from sealpod.kbs.client import resource_jwe

    assert resource_jwe.decrypt(resource.json(), key) == b"from either"
    _durable(first, lambda: kbs_factory(storage=postgres, name="third"))
    time.sleep(0)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty store: a SQLite file, or a PostgreSQL server of its own."""
    if request.param == "sqlite":
        return f"sqlite://{tmp_path / 'kbs.sqlite'}"
    return str(request.getfixturevalue("postgres"))


def test_expired_sessions_are_purged_off_the_request_path_and_a_session_is_attested_once(store_url: str) -> None:
    storage = open_storage(store_url)
    try:
        now = int(time.time())
        assert storage.record_attestations([Session("old", "n1", "sgx", now - 10, "token-0", "digest-0")]) == [True]
        assert storage.record_attestations([Session("live", "n2", "sgx", now + 300, "token-1", "digest-1")]) == [True]
        # a second attestation of the same session does not win, and changes nothing
        assert storage.record_attestations([Session("live", "n2", "sgx", now + 300, "token-2", "digest-2")]) == [False]
        expired = [Session(f"old-{i}", "n", "sgx", now - 5, "t", "d") for i in range(PURGE_BATCH * 2 + 10)]
        assert all(storage.record_attestations(expired))
        storage.start_maintenance(interval=0.02, purge_every=0)
        deadline = time.monotonic() + 10
        while storage._execute("SELECT count(*) FROM sessions")[0][0] > 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert storage.get_session("old") is None
        assert storage._execute("SELECT id FROM sessions") == [("live",)], "every batch of expired sessions went"
        if store_url.startswith("sqlite://"):
            plan = storage._execute("EXPLAIN QUERY PLAN " + _PURGE, (now,))
            steps = [str(row[-1]) for row in plan]
            assert any("INDEX sessions_expires" in step for step in steps), steps
            assert not any(step.startswith("SCAN sessions") for step in steps), steps  # no pass over the whole table
        live = storage.get_session("live")
        assert live is not None
        assert (live.token, live.evidence_digest) == ("token-1", "digest-1")
    finally:
        storage.close()


def test_a_group_of_attestations_is_recorded_in_one_transaction_all_or_none(store_url: str) -> None:
    from sealpod.errors import SealpodError

    storage = open_storage(store_url)
    expires = int(time.time()) + 300

    def session(session_id: str, token: str) -> Session:
        return Session(session_id, f"nonce-{session_id}", "sgx", expires, token, f"digest-{session_id}")

    try:
        assert storage.record_attestations([session("a", "t1"), session("b", "t2"), session("a", "t3")]) == [
            True,
            True,
            False,  # the same session twice in one group: the first is recorded
        ]
        recorded = storage.get_session("a")
        assert recorded is not None
        assert recorded.token == "t1"
        broken = Session("d", None, "sgx", expires, "t5", "digest-d")  # type: ignore[arg-type]  # nonce NOT NULL
        with pytest.raises(SealpodError, match="KBS storage error"):
            storage.record_attestations([session("c", "t4"), broken])
        assert storage.get_session("c") is None, "nothing of a failed group is recorded"
        assert storage.record_attestations([session("c", "t6")]) == [True]
    finally:
        storage.close()


def test_a_postgresql_group_larger_than_one_statement_is_still_all_or_none(
    postgres: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sealpod.errors import SealpodError

    monkeypatch.setattr(postgres_storage, "RECORD_ROWS_PER_STATEMENT", 2)
    storage = open_storage(postgres)
    expires = int(time.time()) + 300

    def session(session_id: str, nonce: str | None = "n") -> Session:
        return Session(session_id, nonce, "sgx", expires, f"token-{session_id}", "d")  # type: ignore[arg-type]

    try:
        group = [session("a"), session("b"), session("c"), session("a"), session("d")]
        assert storage.record_attestations(group) == [True, True, True, False, True]
        with pytest.raises(SealpodError, match="KBS storage error"):
            storage.record_attestations([session("e"), session("f"), session("g"), session("h", nonce=None)])
        assert [storage.get_session(s) for s in "efg"] == [None] * 3, "the chunks before the failing one: undone"
    finally:
        storage.close()


def test_sqlite_writes_wait_for_another_writer_without_the_busy_handler(tmp_path: Path) -> None:
    import sqlite3
    import threading

    from sealpod.errors import SealpodError

    storage = open_storage(f"sqlite://{tmp_path / 'kbs.sqlite'}")
    other = sqlite3.connect(tmp_path / "kbs.sqlite", isolation_level=None, check_same_thread=False)
    try:
        assert storage._conn.execute("PRAGMA busy_timeout").fetchone() == (0,)
        other.execute("BEGIN IMMEDIATE")  # another process's write transaction holds the lock
        other.execute("INSERT INTO sessions (id, nonce, tee, expires) VALUES ('other', 'n', 'sgx', 1)")
        release = threading.Timer(0.3, lambda: other.execute("COMMIT"))
        release.start()
        assert storage.record_attestations([Session("mine", "n", "sgx", int(time.time()) + 60, "t", "d")]) == [True]
        release.join()
        assert storage.get_session("mine") is not None
        assert storage.get_session("other") is not None
        with pytest.raises(SealpodError, match="no such table"):  # other errors are not retried
            storage._execute("SELECT * FROM missing_table")
    finally:
        other.close()
        storage.close()


def test_the_session_nonce_key_is_made_once_and_shared_by_every_process_of_a_store(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'kbs.sqlite'}"
    first, second = open_storage(url), open_storage(url)
    try:
        key = first.shared_key("session-nonce")
        assert len(key) == 32
        assert second.shared_key("session-nonce") == key
        assert first.shared_key("other") != key
        assert first.admin_generation() == 0, "a key is not admin data: no cache is flushed"
    finally:
        first.close()
        second.close()
    reopened = open_storage(url)
    try:
        assert reopened.shared_key("session-nonce") == key, "it survives a restart (sessions in flight stay valid)"
    finally:
        reopened.close()


def test_the_admin_generation_follows_every_admin_write_whoever_makes_it(store_url: str) -> None:
    """The counter the admin-data caches check: moved on by every admin write on this connection or another (by how
    much is the store's business: PostgreSQL's upsert fires its INSERT and UPDATE triggers both), and left as it was
    by session writes."""
    mine, other = open_storage(store_url), open_storage(store_url)
    try:
        seen = mine.admin_generation()
        assert seen is not None
        assert mine.admin_generation() == seen

        def moved() -> bool:
            nonlocal seen
            now = mine.admin_generation()
            assert now == other.admin_generation(), "both connections read the same counter"
            assert now is not None
            before, seen = seen, now
            return now > before

        other.put_resource("default/key/a", b"1")
        assert moved(), "another connection's write is seen"
        mine.set_policy("resource", "default", "package policy")
        assert moved(), "this connection's own write is seen"
        mine.set_reference("mr_enclave", ["ab"], int(time.time()) + 60)
        assert moved()
        session = Session("s1", "n", "sgx", int(time.time()) + 60, "t", "d")
        assert other.record_attestations([session]) == [True]
        assert mine.record_attestations([dataclasses.replace(session, id="s2")]) == [True]
        assert not moved(), "sessions are not admin data"
        other.delete_resource("default/key/a")
        assert moved()
    finally:
        mine.close()
        other.close()


def test_processes_starting_at_once_on_an_empty_postgresql_all_make_the_schema(postgres: str) -> None:
    """`kbs serve --workers N` on a new database: N processes make the same tables, function and triggers at once
    (one at a time, under an advisory lock; PostgreSQL's catalog otherwise refuses concurrent twins)."""
    start = threading.Barrier(6)
    outcomes: list[object] = []

    def open_store() -> None:
        start.wait()
        try:
            storage = open_storage(postgres)
        except Exception as err:
            outcomes.append(err)
            return
        outcomes.append(storage.admin_generation())
        storage.close()

    threads = [threading.Thread(target=open_store) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes == [0] * 6


def test_postgresql_views_read_only_the_counter_and_see_every_writers_change_at_once(
    postgres: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No shared signal between machines: each view reads the counter (one query), the items come from the cache
    until a change, by sealpod or by hand, moves the counter."""
    import psycopg

    mine, other = open_storage(postgres), open_storage(postgres)
    queries: list[str] = []
    fetch = mine._fetch
    monkeypatch.setattr(mine, "_fetch", lambda sql, params: queries.append(sql) or fetch(sql, params))
    try:
        assert mine.admin_signal is None
        other.put_resource("default/key/pg", b"1")
        cache = AdminData(mine)
        for _ in range(3):
            view = cache.view()
            assert view.resource("default/key/pg") == b"1"
            assert view.references() == {}
            assert view.policy("resource", "default") is None
        assert queries.count("SELECT value FROM admin_generation WHERE id = 0") == 3, "the counter: every view"
        assert len(queries) == 3 + 3, "each item once, then from the cache"
        other.put_resource("default/key/pg", b"2")
        assert cache.view().resource("default/key/pg") == b"2"
        with psycopg.connect(postgres, autocommit=True) as raw:  # a writer without this code
            raw.execute("UPDATE resources SET data = %s WHERE path = 'default/key/pg'", (b"3",))
        assert cache.view().resource("default/key/pg") == b"3"
        with psycopg.connect(postgres, autocommit=True) as raw:
            raw.execute("TRUNCATE resources")
        assert cache.view().resource("default/key/pg") is None
    finally:
        mine.close()
        other.close()


def test_admin_writes_are_synced_to_disk_before_they_return(tmp_path: Path) -> None:
    """Resources, policies and reference values are written with synchronous=FULL (the WAL fsynced at commit: an
    acknowledged admin write survives power loss too); session records are not."""
    storage = open_storage(f"sqlite://{tmp_path / 'kbs.sqlite'}")
    statements: list[str] = []
    storage._conn.set_trace_callback(statements.append)
    try:
        writes = {
            "resources": lambda: storage.put_resource("default/key/a", b"1"),
            "policies": lambda: storage.set_policy("resource", "default", "package policy"),
            "reference_values": lambda: storage.set_reference("mr_enclave", ["ab"], int(time.time()) + 60),
            "DELETE FROM resources": lambda: storage.delete_resource("default/key/a"),
        }
        for table, write in writes.items():
            statements.clear()
            write()
            written = next(i for i, sql in enumerate(statements) if table in sql and not sql.startswith("SELECT"))
            assert "PRAGMA synchronous=FULL" in statements[:written], (table, statements)
            assert statements[-1] == "PRAGMA synchronous=NORMAL", (table, statements)
        statements.clear()
        storage.record_attestations([Session("s", "n", "sgx", int(time.time()) + 60, "t", "d")])
        assert not any("synchronous" in sql for sql in statements), statements
    finally:
        storage.close()


def test_the_wal_is_restarted_once_it_is_long_and_not_every_round(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The housekeeping's checkpoint: PASSIVE every round; RESTART (which holds writers off) only once the WAL holds
    more than WAL_RESTART_FRAMES; what was written stays readable."""
    monkeypatch.setattr(sqlite_storage, "WAL_RESTART_FRAMES", 100)
    storage = open_storage(f"sqlite://{tmp_path / 'kbs.sqlite'}")
    conn = storage._connect()
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    now = int(time.time()) + 60

    def write(count: int, prefix: str) -> None:
        for i in range(count):
            storage.record_attestations([Session(f"{prefix}{i}", "n", "sgx", now, "t", "d")])

    try:
        with storage._using_store():
            storage._conn.execute("PRAGMA wal_autocheckpoint=0")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the schema's frames out of the way
        write(5, "a")
        statements.clear()
        sqlite_storage.SqliteStorage._checkpoint(conn)
        assert "PRAGMA wal_checkpoint(PASSIVE)" in statements
        assert "PRAGMA wal_checkpoint(RESTART)" not in statements, "a short WAL is left as it is"
        write(100, "c")
        statements.clear()
        sqlite_storage.SqliteStorage._checkpoint(conn)
        assert "PRAGMA wal_checkpoint(RESTART)" in statements, "a long one is restarted"
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 30000
        write(1, "d")
        assert [storage.get_session(s) is not None for s in ("a4", "c99", "d0")] == [True] * 3
    finally:
        conn.close()
        storage.close()
