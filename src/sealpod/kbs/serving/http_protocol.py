"""uvicorn's httptools protocol, writing each response in one piece, and answering the handshake's requests without
ASGI.

uvicorn writes a response's head and its body with two ``transport.write`` calls; with TCP_NODELAY (needed against
the delayed-ACK stall) that is two segments, two send system calls and two wake-ups of the client per response,
about a quarter of a KBS worker's time under load. Writes made in the same event-loop step are joined and sent once
at the end of the step.

The handshake's requests (see :meth:`FastRcar.route`) are answered when their last byte is parsed, by the same
:meth:`FastRcar.respond` the ASGI app uses, without a request-response cycle, an asyncio task and ASGI messages
per request. Only requests uvicorn would run at once take this lane: not behind a pipelined request still being
answered, not with ``Expect: 100-continue``, not over a concurrency limit; those, and everything else, go the ASGI
way.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast
from urllib.parse import unquote

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from sealpod.kbs.client.protocol import KbsError
from sealpod.kbs.serving.fast_lane import Answer, FastRcar, first_values

log = logging.getLogger(__name__)
#: A request must not sit idle (no byte of its head or body) for longer than this, as actix-web (trustee's server)
#: times out a client's request head, in seconds...
REQUEST_IDLE_TIMEOUT = 5.0
#: ...and must be whole within this: a declared Content-Length the client never sends does not hold a connection.
REQUEST_TIMEOUT = 60.0
_TIMED_OUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 42\r\nconnection: close\r\n\r\nthe request did not arrive in time: closed"
)
_SERVER_ERROR = (
    b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 21\r\nconnection: close\r\n\r\nInternal Server Error"
)


class _CoalescingTransport:
    """A transport whose writes within one loop step go out as one."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(data)

    def _flush(self) -> None:
        if not self._pending:
            return
        data = b"".join(self._pending)
        self._pending.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _Answering:
    """In place of uvicorn's request-response cycle while a fast-lane answer is being made (an attestation waiting
    for its group commit): uvicorn queues a request pipelined behind it as behind an unfinished cycle, and starts it
    when the answer is sent (``on_response_complete``)."""

    response_complete = False

    def __init__(self) -> None:
        self.disconnected = False
        self.keep_alive = True
        self.message_event = asyncio.Event()


def find_fast_rcar(app: Any) -> FastRcar | None:
    """The FastRcar under uvicorn's middleware wrappers (each keeps the app it wraps as ``app``)."""
    for _ in range(8):
        if isinstance(app, FastRcar):
            return app
        app = getattr(app, "app", None)
    return None


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """The httptools protocol over a :class:`_CoalescingTransport`, with the handshake's fast lane."""

    _fast_app: FastRcar | None = None
    _fast: str | None = None
    _fast_target: tuple[str, bytes] = ("", b"")
    _fast_body: list[bytes]
    _fast_size = 0
    _closing = False
    _deferred = False
    _timer: asyncio.TimerHandle | None = None
    _started = 0.0
    _last_data = 0.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(cast(asyncio.Transport, _CoalescingTransport(transport, self.loop)))
        self._fast_app = find_fast_rcar(self.app)

    def data_received(self, data: bytes) -> None:
        self._last_data = self.loop.time()
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._started = self._last_data = self.loop.time()
        if self._timer is None:
            self._timer = self.loop.call_later(REQUEST_IDLE_TIMEOUT, self._check_arrival)

    def _check_arrival(self) -> None:
        """Close a connection whose request stalled (idle too long) or is too slow overall, with a 408."""
        self._timer = None
        now = self.loop.time()
        idle_until = self._last_data + REQUEST_IDLE_TIMEOUT
        whole_until = self._started + REQUEST_TIMEOUT
        if now < min(idle_until, whole_until):
            self._timer = self.loop.call_later(min(idle_until, whole_until) - now, self._check_arrival)
            return
        if not self.transport.is_closing():
            self.transport.write(_TIMED_OUT)
            self.transport.close()

    def _arrived(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def connection_lost(self, exc: Exception | None) -> None:
        self._arrived()
        super().connection_lost(exc)

    def on_headers_complete(self) -> None:
        self._fast = None
        fast_app = self._fast_app
        plain = not self.expect_100_continue and self.limit_concurrency is None and not self.root_path
        if fast_app is not None and plain and not self.pipeline and not self.parser.should_upgrade():
            url = httptools.parse_url(self.url)
            path = url.path.decode("ascii")
            path = unquote(path) if "%" in path else path  # as uvicorn puts it in the ASGI scope
            name = fast_app.route(self.parser.get_method().decode("ascii"), path)
            if name is not None and (self.cycle is None or self.cycle.response_complete):
                self._fast, self._fast_target = name, (path, url.query or b"")
                self._fast_body, self._fast_size = [], 0
                return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self._fast is None:
            super().on_body(body)
            return
        self._fast_size += len(body)
        if self._fast_app is not None and self._fast_size <= self._fast_app.max_body:
            self._fast_body.append(body)

    def on_message_complete(self) -> None:
        self._arrived()
        name, fast_app = self._fast, self._fast_app
        if name is None or fast_app is None:
            super().on_message_complete()
            return
        self._fast = None
        parser = self.parser
        keep_alive = (
            parser.get_http_version() != "1.0"
            and parser.should_keep_alive()
            and not self._closing
            and self.keep_alive()
        )
        try:
            error = None
            if self._fast_size > fast_app.max_body:
                error = KbsError("InvalidRequest", f"request body over {fast_app.max_body} bytes", status=413)
            path, query = self._fast_target
            body = b"".join(self._fast_body)
            answer = fast_app.respond(
                name, path, query, first_values(self.headers), body, lambda later: self._send(later, keep_alive), error
            )
        except Exception:
            log.exception("the KBS failed to answer %s", name)
            self.transport.write(_SERVER_ERROR)
            self.transport.close()
            return
        if answer is None:  # answered after the group commit; requests pipelined behind it wait for it
            self._deferred = True
            self.cycle = cast(Any, _Answering())  # (uvicorn pauses reading when it queues one)
            return
        self._send(answer, keep_alive)

    def _send(self, answer: Answer, keep_alive: bool) -> None:
        if self._deferred:
            self._deferred = False
            if isinstance(self.cycle, _Answering):  # else a pipelined request's cycle, started next
                self.cycle = cast(Any, None)
        keep_alive = keep_alive and not self._closing
        status, headers, content = answer
        head = [STATUS_LINE[status]]
        for header_name, value in (*self.server_state.default_headers, *headers):
            head += [header_name, b": ", value, b"\r\n"]
        if not keep_alive:
            head.append(b"connection: close\r\n")
        head += [b"\r\n", content]
        self.transport.write(b"".join(head))
        if not keep_alive:
            self.transport.close()
        self.on_response_complete()

    def keep_alive(self) -> bool:
        """Whether the connection may stay open after this response (the server's say; True here)."""
        return True

    def shutdown(self) -> None:
        if self._fast is not None or self._deferred:  # a fast-lane request is being read or answered: finish, close
            self._closing = True
            return
        super().shutdown()
