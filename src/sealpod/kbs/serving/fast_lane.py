"""Raw ASGI for the three requests of every handshake (POST /kbs/v0/auth, POST /kbs/v0/attest, GET of a resource;
the ``fast`` methods of :data:`~sealpod.kbs.serving.routes.ROUTES`), in front of the Starlette app that serves
everything else: no Request or Response objects or middleware stack per request. Anything else, and any request that
does not match exactly, goes to Starlette, which answers it the same way it always has."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import cookie_parser

from sealpod._internal.jose import compact_json
from sealpod.errors import SealpodError
from sealpod.kbs.client.protocol import SESSION_COOKIE, KbsError, check_resource_path
from sealpod.kbs.service.kbs import Appraised, Kbs
from sealpod.kbs.service.storage import Session
from sealpod.kbs.serving.group_commit import GroupCommit, Outcome
from sealpod.kbs.serving.routes import RESOURCE_PREFIX, fast_route, path_parameters

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger(__name__)
_JSON = (b"content-type", b"application/json")
_TEXT = (b"content-type", b"text/plain; charset=utf-8")


def error_body(err: SealpodError) -> tuple[int, dict[str, str]]:
    """Status and trustee's JSON body for an error (a hint is appended to the detail)."""
    if not isinstance(err, KbsError):
        return 401, KbsError("PluginInternalError", str(err)).body()
    body = err.body()
    if err.hint:
        body["detail"] += f" (hint: {err.hint})"
    return err.status, body


def first_values(headers: Iterable[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    """Header names to their first value (what Starlette's ``headers.get`` answers)."""
    return dict(reversed(list(headers)))


def cookie_value(headers: dict[bytes, bytes]) -> str | None:
    """The kbs-session-id cookie (None when absent), parsed as Starlette parses cookies."""
    raw = headers.get(b"cookie")
    if raw is None:
        return None
    return cookie_parser(raw.decode("latin-1")).get(SESSION_COOKIE)


@functools.lru_cache(maxsize=4)
def _cookie_expires(expires: int) -> str:
    return formatdate(expires, usegmt=True)


def cookie_header(session: Session) -> str:
    """The Set-Cookie value for ``session``."""
    return f"{SESSION_COOKIE}={session.id}; Expires={_cookie_expires(session.expires)}; Path=/kbs; HttpOnly"


Answer = tuple[int, list[tuple[bytes, bytes]], bytes]


class FastRcar:
    """The ASGI app: the handshake's requests here, the rest to ``fallback``. :meth:`route` and :meth:`respond`
    are plain functions, for the HTTP protocol to call without ASGI (see :mod:`http_protocol`)."""

    def __init__(self, kbs: Kbs, fallback: App) -> None:
        self.kbs = kbs
        self.fallback = fallback
        self.max_body = kbs.config.http.max_body_bytes
        self.group_commit = GroupCommit(kbs.storage, kbs.counters)
        #: The other workers' counters (set by ``--workers``), which /metrics adds to this process's.
        self.peer_counters: Callable[[], Counter[str]] | None = None

    #: ``auth``, ``attest`` or ``resource`` for a request of the handshake; None for anything else.
    route = staticmethod(fast_route)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        name = self.route(scope["method"], scope["path"]) if scope["type"] == "http" else None
        if name is None:
            await self.fallback(scope, receive, send)
            return
        error: KbsError | None = None
        body = b""
        if name != "resource":
            try:
                body = await self._body(receive)
            except KbsError as err:
                error = err
        later: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()

        def deliver(answer: Answer) -> None:
            if not later.done():  # not cancelled with its request
                later.set_result(answer)

        answer = self.respond(
            name, scope["path"], scope["query_string"], first_values(scope["headers"]), body, deliver, error
        )
        status, headers, content = answer if answer is not None else await later
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})

    def respond(
        self,
        name: str,
        path: str,
        query_string: bytes,
        headers: dict[bytes, bytes],
        body: bytes,
        later: Callable[[Answer], None],
        error: KbsError | None = None,
    ) -> Answer | None:
        """Status, headers and body of the answer to request ``name`` (of :meth:`route`); ``error`` is an error
        met while reading the request (its body too large). An attestation the service accepted is recorded with
        the others of this event-loop step (:class:`GroupCommit`): then this returns None and ``later`` gets the
        answer after the commit."""
        kbs = self.kbs
        kbs.counters[f"requests_{name}"] += 1
        try:
            if error is not None:
                raise error
            if name == "resource":
                content_type, content = self._resource(path, query_string, headers)
                return _answer(200, content_type, content)
            if name == "auth":
                return _session_answer(*kbs.start_session(body))
            step = kbs.appraise_attestation(cookie_value(headers), body)
            if not isinstance(step, Appraised):
                return _session_answer(*step)
            self.group_commit.record(step.session, lambda outcome: later(self._concluded(step, outcome)))
            return None
        except SealpodError as err:
            return self._error_answer(err)

    def _concluded(self, step: Appraised, outcome: Outcome) -> Answer:
        """The answer to an attestation once its record is in (a 500 for a bug: the request is answered anyway)."""
        try:
            if isinstance(outcome, SealpodError):
                raise outcome
            return _session_answer(*self.kbs.conclude_attestation(step, outcome))
        except SealpodError as err:
            return self._error_answer(err)
        except Exception:
            log.exception("the KBS failed to answer an attestation")
            return _answer(500, _TEXT, b"Internal Server Error")

    def _error_answer(self, err: SealpodError) -> Answer:
        if isinstance(err, KbsError):
            self.kbs.counters[f"errors_{err.variant}"] += 1
        status, detail = error_body(err)
        return _answer(status, _JSON, compact_json(detail))

    def _resource(
        self, url_path: str, query_string: bytes, headers: dict[bytes, bytes]
    ) -> tuple[tuple[bytes, bytes], bytes]:
        repository, kind, tag = path_parameters(url_path, RESOURCE_PREFIX, 3) or ("", "", "")
        path = check_resource_path(repository, kind, tag)
        authorization = headers.get(b"authorization")
        query = dict(parse_qsl(query_string.decode("latin-1"), keep_blank_values=True))
        released = self.kbs.release_resource(
            path,
            authorization.decode("latin-1") if authorization is not None else None,
            cookie_value(headers),
            query,
        )
        return _JSON, compact_json(released)

    async def _body(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise KbsError("InvalidRequest", "the client disconnected before the request body was read")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise KbsError("InvalidRequest", f"request body over {self.max_body} bytes", status=413)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _answer(status: int, content_type: tuple[bytes, bytes], content: bytes, *extra: tuple[bytes, bytes]) -> Answer:
    return status, [(b"content-length", str(len(content)).encode()), content_type, *extra], content


def _session_answer(payload: dict[str, Any], session: Session) -> Answer:
    """The JSON answer of /auth or /attest, with the session cookie."""
    return _answer(200, _JSON, compact_json(payload), (b"set-cookie", cookie_header(session).encode("latin-1")))
