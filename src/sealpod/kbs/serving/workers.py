"""Several uvicorn workers serving one listening socket, with their kept-alive connections kept level.

On a shared socket the worker that happens to be idle when a client connects takes the connection, and with
keep-alive keeps it: a burst of connects can leave one worker with two thirds of them, whose clients then wait half
again as long as the others'. Here each worker publishes the number of connections it holds (and a heartbeat) in a
page shared by all workers, and accepts only while it is less than :data:`ACCEPT_AHEAD` ahead of the least loaded
live worker; otherwise it closes its listener (its own duplicate of the shared socket; the connections stay) and
reopens it when the others have caught up. A worker far above the others (it was up first) also ends kept-alive
connections, gracefully, until it is not. A worker whose heartbeat is a quarter of a second old counts as gone, so
a stuck or dead worker never holds the others back.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import mmap
import os
import signal
import socket
import time
from typing import TYPE_CHECKING, Any

import uvicorn

from sealpod._internal.processes import die_with_parent
from sealpod.kbs.serving.http_protocol import CoalescingHttpToolsProtocol, find_fast_rcar
from sealpod.kbs.serving.shared_counters import SharedCounters

if TYPE_CHECKING:
    from sealpod.kbs.service.kbs import Kbs

#: How often a worker republishes its count and heartbeat and reconsiders accepting (seconds).
TICK = 0.005
#: A worker whose heartbeat is older than this (nanoseconds) is left out of the comparison (so a new connection
#: waits at most about this long for a stuck worker to take its share).
STALE_NS = 250_000_000
#: A worker stops accepting once it holds this many connections more than the least loaded live worker. A lead of
#: one would be the most level, but a burst of connects (many clients at once) would then be taken one per
#: event-loop step of each busy worker in turn, the rest waiting in the backlog: 30 connects took 400 ms at N=64.
ACCEPT_AHEAD = 4
#: A worker holding more than this many connections above the least loaded one ends kept-alive connections (with
#: ``Connection: close`` on their next handshake response) until it does not: the clients reconnect to the others.
#: This levels what the accept rule cannot (connections taken before another worker was up).
SHED_ABOVE = 6


class ConnectionShares:
    """Connection counts and heartbeats of ``workers`` processes, in anonymous shared memory made before the fork
    (each worker writes only its own slots; 8-byte aligned stores, so a reader sees a whole value)."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._map = mmap.mmap(-1, 16 * workers)
        self._slots = memoryview(self._map).cast("q")

    def publish(self, index: int, connections: int, now_ns: int) -> None:
        """Record worker ``index``'s connection count, alive at ``now_ns`` (``time.monotonic_ns``)."""
        self._slots[2 * index] = connections
        self._slots[2 * index + 1] = now_ns

    def excess(self, index: int, connections: int, now_ns: int) -> int:
        """How many more connections worker ``index``, holding ``connections``, holds than the least loaded other
        live worker (0 when no other is live)."""
        slots = self._slots
        least = connections
        for other in range(self.workers):
            if other != index and now_ns - slots[2 * other + 1] < STALE_NS:
                least = min(least, slots[2 * other])
        return connections - least

    def may_accept(self, index: int, connections: int, now_ns: int) -> bool:
        """Whether worker ``index``, holding ``connections``, may take one more: it is less than
        :data:`ACCEPT_AHEAD` ahead of every other live worker."""
        return self.excess(index, connections, now_ns) < ACCEPT_AHEAD


class KbsServer(uvicorn.Server):
    """A uvicorn server that, once the app is loaded, moves what start-up made (modules, the app, its caches'
    certificates) out of the garbage collector's view: a full collection otherwise walks all of it, and under load
    stalled a worker's event loop for 29 ms about every ten seconds."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        gc.freeze()


class BalancedServer(KbsServer):
    """A uvicorn server that accepts from ``listener`` only while :class:`ConnectionShares` says so, and (with
    ``counters``) publishes its KBS counters for the other workers' ``/metrics`` and sums theirs into its own."""

    def __init__(
        self,
        config: uvicorn.Config,
        listener: socket.socket,
        shares: ConnectionShares,
        index: int,
        counters: SharedCounters | None = None,
    ) -> None:
        super().__init__(config)
        self._listener = listener
        self._shares = shares
        self._index = index
        self._counters = counters
        self._kbs: Kbs | None = None
        self._accepting = False
        self._shedding = 0
        self._opening: asyncio.Task[None] | None = None
        self._ticker: asyncio.TimerHandle | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's start-up on a duplicate of the listener (closing it stops this worker's accepting only)."""
        await super().startup(sockets=[self._duplicate()])
        fast = find_fast_rcar(self.config.loaded_app)
        if self._counters is not None and fast is not None:
            self._kbs = fast.kbs
            fast.peer_counters = functools.partial(self._counters.others, self._index)
        self._accepting = True
        self._tick()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        if self._opening is not None:
            self._opening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._opening
        await super().shutdown(sockets)

    def connection_made(self) -> None:
        """Called by the protocol of each new connection: stop accepting at once when this one tipped the
        balance (a burst is otherwise taken whole by whoever is awake)."""
        self._reconsider()

    def keep_alive(self) -> bool:
        """Whether a kept-alive connection of this worker may stay open after the response being written; when
        not, the connection counts as gone already (see :meth:`shed_done`), so that one step does not shed all."""
        if self._shares.excess(self._index, self._held(), time.monotonic_ns()) <= SHED_ABOVE:
            return True
        self._shedding += 1
        return False

    def shed_done(self) -> None:
        """Called when a connection that :meth:`keep_alive` ended is gone."""
        self._shedding -= 1

    def _held(self) -> int:
        return len(self.server_state.connections) - self._shedding

    def _duplicate(self) -> socket.socket:
        return socket.socket(fileno=os.dup(self._listener.fileno()))

    def _tick(self) -> None:
        self._reconsider()
        if self._counters is not None and self._kbs is not None:
            self._counters.publish(self._index, self._kbs.counters)
        if not self.should_exit:
            self._ticker = asyncio.get_running_loop().call_later(TICK, self._tick)

    def _reconsider(self) -> None:
        count, now = self._held(), time.monotonic_ns()
        self._shares.publish(self._index, count, now)
        if self.should_exit or self._opening is not None:
            return
        wanted = self._shares.may_accept(self._index, count, now)
        if wanted and not self._accepting:
            self._opening = asyncio.get_running_loop().create_task(self._open())
        elif not wanted and self._accepting:
            for server in self.servers:
                server.close()
            self.servers.clear()
            self._accepting = False

    async def _open(self) -> None:
        try:
            config = self.config
            server = await asyncio.get_running_loop().create_server(
                self._protocol, sock=self._duplicate(), ssl=config.ssl, backlog=config.backlog
            )
            self.servers.append(server)
            self._accepting = True
        finally:
            self._opening = None

    def _protocol(self) -> asyncio.Protocol:
        """A connection's protocol, made as uvicorn's start-up makes it."""
        protocol: Any = self.config.http_protocol_class
        return protocol(config=self.config, server_state=self.server_state, app_state=self.lifespan.state)  # type: ignore[no-any-return]


class _BalancedProtocol(CoalescingHttpToolsProtocol):
    """The KBS's HTTP protocol telling this worker's :class:`BalancedServer` of its connections (one server per
    forked worker: the class attribute is the process's)."""

    balancer: BalancedServer
    _shed = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.balancer.connection_made()

    def keep_alive(self) -> bool:
        if self.balancer.keep_alive():
            return True
        self._shed = True
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self._shed:
            self.balancer.shed_done()


def _config(certfile: str | None, keyfile: str | None, protocol: type[CoalescingHttpToolsProtocol]) -> uvicorn.Config:
    return uvicorn.Config(
        "sealpod.kbs.serving.app:app_from_env",
        factory=True,
        http=protocol,
        log_level="warning",
        access_log=False,  # at log level warning it was never shown, yet formatted per request
        ssl_certfile=certfile,
        ssl_keyfile=keyfile,
    )


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP listening socket on ``host:port`` for the workers to share."""
    # proto must be IPPROTO_TCP: asyncio sets TCP_NODELAY only on such sockets, and without it the response's
    # headers and body meet the client's delayed ACK (40 ms per request on a kept-alive connection)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    return sock


def serve_workers(host: str, port: int, workers: int, certfile: str | None, keyfile: str | None) -> None:
    """Serve the KBS on ``host:port`` from ``workers`` forked processes sharing one listening socket, kept level
    by :class:`BalancedServer`; returns when every worker has stopped (SIGTERM/SIGINT stop them)."""
    sock = listening_socket(host, port)
    if workers <= 1:
        KbsServer(_config(certfile, keyfile, CoalescingHttpToolsProtocol)).run(sockets=[sock])
        return
    shares = ConnectionShares(workers)
    counters = SharedCounters(workers)
    pids = []
    master = os.getpid()
    for index in range(workers):
        pid = os.fork()
        if pid == 0:
            try:
                # a worker must not outlive its master (a kill -9 of it): it would go on serving the old
                # configuration and keys on the port, and a new master could not bind it
                die_with_parent(master)
                server = BalancedServer(_config(certfile, keyfile, _BalancedProtocol), sock, shares, index, counters)
                _BalancedProtocol.balancer = server
                server.run(sockets=[sock])
            finally:
                os._exit(0)
        pids.append(pid)

    def stop(*_: object) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for pid in pids:
        while True:
            try:
                os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
