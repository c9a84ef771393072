"""`sealpod kbs serve --workers N`: kept-alive connections spread evenly over the workers (also those taken before
the other workers were up), and a stuck worker does not hold the others back."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from sealpod.kbs.serving.shared_counters import SharedCounters
from sealpod.kbs.serving.workers import ACCEPT_AHEAD, SHED_ABOVE, STALE_NS, ConnectionShares
from tests.kbs.conftest import KbsProcess


def test_a_worker_accepts_only_while_less_than_accept_ahead_ahead_of_every_live_worker() -> None:
    shares = ConnectionShares(3)
    now = time.monotonic_ns()
    shares.publish(0, 10, now)
    shares.publish(1, 10 - ACCEPT_AHEAD, now)
    shares.publish(2, 30, now)
    assert not shares.may_accept(0, 10, now)  # worker 1 holds ACCEPT_AHEAD fewer
    assert shares.may_accept(1, 10 - ACCEPT_AHEAD, now)
    assert not shares.may_accept(2, 30, now)
    shares.publish(1, 11 - ACCEPT_AHEAD, now)
    assert shares.may_accept(0, 10, now)  # one short of the lead that stops it
    assert shares.excess(2, 30, now) == 30 - (11 - ACCEPT_AHEAD)
    # a worker silent for longer than STALE_NS (stuck or dead) is left out, however few it holds
    shares.publish(1, 0, now - STALE_NS - 1)
    assert shares.may_accept(0, 10, now)
    assert shares.excess(0, 10, now) == 0
    assert not shares.may_accept(2, 30, now)  # worker 0 is live and holds far fewer


def _workers(server: KbsProcess) -> list[int]:
    assert server.process is not None
    pid = server.process.pid
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        children = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        if len(children) == server.workers:
            return children
        time.sleep(0.05)
    raise AssertionError(f"expected {server.workers} workers under {pid}")


def _sockets(pid: int) -> list[str]:
    """The socket inodes of process ``pid``'s descriptors (one per descriptor)."""
    inodes = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue
        if target.startswith("socket:["):
            inodes.append(target[8:-1])
    return inodes


def _tcp(port: int, state: str) -> set[str]:
    """Inodes of the TCP sockets on local port ``port`` in ``state`` (01 established, 0A listening)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == state:
            inodes.add(fields[9])
    return inodes


def _established(pid: int, port: int) -> int:
    """TCP connections on local port ``port`` held by process ``pid`` (what the kernel says)."""
    return len(set(_sockets(pid)) & _tcp(port, "01"))


def _wait_until_all_accept(server: KbsProcess, workers: list[int]) -> None:
    """Until every worker has its own descriptor of the listening socket besides the inherited one (it serves)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        listening = _tcp(server.port, "0A")
        if all(sum(inode in listening for inode in _sockets(pid)) >= 2 for pid in workers):
            return
        time.sleep(0.05)
    raise AssertionError("not every worker came to accept connections")


def test_shared_counters_sum_the_other_workers_latest_copies() -> None:
    counters = SharedCounters(3)
    assert counters.others(0) == {}
    counters.publish(1, {"requests_auth": 3, "attestations": 1})
    counters.publish(2, {"requests_auth": 4})
    counters.publish(1, {"requests_auth": 5, "attestations": 2})  # a later copy replaces the earlier
    assert counters.others(0) == {"requests_auth": 9, "attestations": 2}
    assert counters.others(1) == {"requests_auth": 4}
    counters.publish(2, {f"errors_{i:05d}": i for i in range(1, 2000)})  # does not fit: the last copy stays
    assert counters.published(2) == {"requests_auth": 4}


_AUTH = b'{"version":"0.4.0","tee":"sgx","extra-params":""}'
_AUTH_REQUEST = (
    b"POST /kbs/v0/auth HTTP/1.1\r\nhost: kbs\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
    % (len(_AUTH), _AUTH)
)


def _answer(sock: socket.socket) -> bytes:
    """The head of one whole response (its content-length body read too)."""
    return _response(sock)[0]


def _response(sock: socket.socket) -> tuple[bytes, bytes]:
    """One whole response: head and content-length body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed mid-response: {data[:200]!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.lower().split(b"\r\n") if line.startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head, body


def _connect(server: KbsProcess, connections: int) -> list[socket.socket]:
    """``connections`` connections opened at once."""
    return [socket.create_connection(("127.0.0.1", server.port), timeout=15) for _ in range(connections)]


def _served(server: KbsProcess, socks: list[socket.socket]) -> list[socket.socket]:
    """One /auth on each connection, kept alive, round after round until no response ends its connection (after
    one that does, the next round goes on a new connection, as HTTP clients do); the connections then open."""
    for _ in range(10):
        closed = 0
        for sock in socks:
            sock.sendall(_AUTH_REQUEST)
        for i, sock in enumerate(socks):
            head = _answer(sock)
            assert head.startswith(b"HTTP/1.1 200"), head[:200]
            if b"\r\nconnection: close" in head.lower():
                closed += 1
                sock.close()
                socks[i] = socket.create_connection(("127.0.0.1", server.port), timeout=15)
        if not closed:
            return socks
    raise AssertionError("the workers still ended connections after 10 rounds")


def test_a_burst_of_kept_alive_connections_is_spread_evenly(kbs_factory: Callable[..., KbsProcess]) -> None:
    server = kbs_factory(workers=2)
    workers = _workers(server)
    _wait_until_all_accept(server, workers)
    socks = _served(server, _connect(server, 40))
    try:
        counts = [_established(pid, server.port) for pid in workers]
        assert sum(counts) == 40, counts
        assert max(counts) - min(counts) <= ACCEPT_AHEAD, f"connections per worker: {counts}"
    finally:
        for sock in socks:
            sock.close()


def test_a_stopped_worker_does_not_hold_the_others_back_and_gets_its_share_back(
    kbs_factory: Callable[..., KbsProcess],
) -> None:
    server = kbs_factory(workers=2)
    stuck, live = _workers(server)
    _wait_until_all_accept(server, [stuck, live])
    os.kill(stuck, signal.SIGSTOP)
    socks: list[socket.socket] = []
    try:
        socks = _served(server, _connect(server, 20))  # answered once the stopped worker's heartbeat is stale
        assert (_established(live, server.port), _established(stuck, server.port)) == (20, 0)
        os.kill(stuck, signal.SIGCONT)
        time.sleep(0.2)  # its heartbeat is fresh again
        # the live worker ends connections until the two are level; a round's new connections can still reach the
        # live worker while the resumed one catches up on its accepting, so the traffic goes on for up to 5 s
        deadline = time.monotonic() + 5.0
        while True:
            socks = _served(server, socks)
            counts = [_established(pid, server.port) for pid in (live, stuck)]
            assert sum(counts) == 20
            if max(counts) - min(counts) <= SHED_ABOVE or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert max(counts) - min(counts) <= SHED_ABOVE, f"connections per worker: {counts}"
    finally:
        os.kill(stuck, signal.SIGCONT)
        for sock in socks:
            sock.close()


def test_metrics_on_any_worker_count_every_workers_requests(kbs_factory: Callable[..., KbsProcess]) -> None:
    server = kbs_factory(workers=2)
    workers = _workers(server)
    _wait_until_all_accept(server, workers)
    socks = _connect(server, 20)
    try:
        for sock in socks:
            sock.sendall(_AUTH_REQUEST)
        for i, sock in enumerate(socks):
            head = _answer(sock)
            assert head.startswith(b"HTTP/1.1 200"), head[:200]
            if b"\r\nconnection: close" in head.lower():  # shed: scrape on a new connection instead
                sock.close()
                socks[i] = socket.create_connection(("127.0.0.1", server.port), timeout=15)
        counts = [_established(pid, server.port) for pid in workers]
        assert min(counts) > 0, f"one worker holds every connection: {counts}"
        time.sleep(0.2)  # each worker publishes its counters every TICK
        for sock in socks:  # scrapes reach both workers: each one reports all 20 requests
            sock.sendall(b"GET /metrics HTTP/1.1\r\nhost: kbs\r\n\r\n")
            head, body = _response(sock)
            assert head.startswith(b"HTTP/1.1 200"), head[:200]
            assert b"\nsealpod_kbs_requests_auth_total 20\n" in body, body.decode()
    finally:
        for sock in socks:
            sock.close()


def test_workers_die_with_a_killed_master_and_a_restart_binds_the_same_port(
    kbs_factory: Callable[..., KbsProcess],
) -> None:
    server = kbs_factory(workers=2)
    workers = _workers(server)
    server.kill("kill")  # kill -9 of the master: no chance to stop its workers itself
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in workers):
        time.sleep(0.05)
    alive = [pid for pid in workers if Path(f"/proc/{pid}").exists()]
    assert alive == [], f"workers {alive} outlived their master"
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server.url}/healthz", timeout=1)  # nobody serves the old configuration any more
    server.start()  # the same port, the same configuration: it comes up
    assert httpx.get(f"{server.url}/healthz", timeout=2).status_code == 200
    assert len(_workers(server)) == 2
