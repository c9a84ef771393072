"""Raw ASGI for the three requests of every handshake (POST /kbs/v0/auth, POST /kbs/v0/attest, GET of a resource),
in front of the Starlette app that serves everything else: no routing table, Request or Response objects or
middleware stack per request. Anything else, and any request that does not match exactly, goes to Starlette, which
answers it the same way it always has."""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable, MutableMapping
from email.utils import formatdate
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from starlette.requests import cookie_parser

from sealpod.errors import SealpodError
from sealpod.kbs.protocol import SESSION_COOKIE, KbsError, check_resource_path
from sealpod.kbs.storage import Session

if TYPE_CHECKING:
    from sealpod.kbs.server import Kbs

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

RESOURCE_PREFIX = "/kbs/v0/resource/"
_JSON = (b"content-type", b"application/json")
_OCTETS = (b"content-type", b"application/octet-stream")


def error_body(err: SealpodError) -> tuple[int, dict[str, str]]:
    """Status and trustee's JSON body for an error (a hint is appended to the detail)."""
    if not isinstance(err, KbsError):
        return 401, KbsError("PluginInternalError", str(err)).body()
    body = err.body()
    if err.hint:
        body["detail"] += f" (hint: {err.hint})"
    return err.status, body


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


class FastRcar:
    """The ASGI app: the handshake's requests here, the rest to ``fallback``."""

    def __init__(self, kbs: Kbs, fallback: App) -> None:
        self.kbs = kbs
        self.fallback = fallback
        self.max_body = kbs.config.http.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.fallback(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        if method == "POST" and path == "/kbs/v0/auth":
            await self._run("auth", scope, receive, send)
        elif method == "POST" and path == "/kbs/v0/attest":
            await self._run("attest", scope, receive, send)
        elif method == "GET" and path.startswith(RESOURCE_PREFIX) and _resource_parts(path) is not None:
            await self._run("resource", scope, receive, send)
        else:
            await self.fallback(scope, receive, send)

    async def _run(self, name: str, scope: Scope, receive: Receive, send: Send) -> None:
        kbs = self.kbs
        kbs.counters[f"requests_{name}"] += 1
        headers = dict(scope["headers"])
        extra: list[tuple[bytes, bytes]] = []
        status = 200
        try:
            if name == "resource":
                content_type, body = self._resource(scope, headers)
            else:
                request = await self._body(receive)
                session_id = cookie_value(headers) if name == "attest" else None
                if name == "auth":
                    payload, session = kbs.start_session(request)
                else:
                    payload, session = kbs.attest_session(session_id, request)
                content_type, body = _JSON, _json(payload)
                extra.append((b"set-cookie", cookie_header(session).encode("latin-1")))
        except SealpodError as err:
            if isinstance(err, KbsError):
                kbs.counters[f"errors_{err.variant}"] += 1
            status, error = error_body(err)
            content_type, body = _JSON, _json(error)
            extra = []
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-length", str(len(body)).encode()), content_type, *extra],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _resource(self, scope: Scope, headers: dict[bytes, bytes]) -> tuple[tuple[bytes, bytes], bytes]:
        repository, kind, tag = _resource_parts(scope["path"]) or ("", "", "")
        path = check_resource_path(repository, kind, tag)
        authorization = headers.get(b"authorization")
        query = dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True))
        released = self.kbs.release_resource(
            path,
            f"GET {scope['path']}",
            authorization.decode("latin-1") if authorization is not None else None,
            cookie_value(headers),
            query,
        )
        if isinstance(released, bytes):
            return _OCTETS, released
        return _JSON, _json(released)

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


def _resource_parts(path: str) -> tuple[str, str, str] | None:
    """repository, type and tag of ``/kbs/v0/resource/<repository>/<type>/<tag>`` (None for any other path)."""
    parts = path[len(RESOURCE_PREFIX) :].split("/")
    if len(parts) != 3 or not all(parts):
        return None
    return parts[0], parts[1], parts[2]


def _json(payload: Any) -> bytes:
    """JSON as Starlette's JSONResponse renders it."""
    return json.dumps(payload, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode()
