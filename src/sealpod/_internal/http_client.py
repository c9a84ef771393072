"""An HTTP/1.1 client on the standard library's ``http.client``: keep-alive connections per origin, redirects,
streamed bodies, TLS verification, proxies from the environment.

Every pull and every enclave talks to a registry and a KBS. httpx (with httpcore, h11, anyio, idna) costs each of
those processes 30-60 ms of imports and ~14 MiB; this costs ~10 ms and ~2 MiB over ``ssl``, for the part of HTTP they
use. Behaviour a user relies on follows httpx's: redirects (at most 20) are followed with the method changed for 303
(and for a POST after 301/302) and the ``Authorization`` header dropped when the origin changes (a registry that
sends blob downloads to a storage service must not hand it the registry token); ``HTTP(S)_PROXY``, ``ALL_PROXY`` and
``NO_PROXY`` are honoured (an ``http://`` proxy: CONNECT for https, absolute URLs for http). Transport failures are
:class:`TransportError` with what failed; HTTP statuses are the caller's to judge.
"""

from __future__ import annotations

import base64
import http.client
import json as _json
import os
import ssl
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

from sealpod._internal.tls import client_context, unverified_context

REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 20
READ_CHUNK = 512 * 1024
Origin = tuple[str, str, int]
Body = bytes | Iterable[bytes] | None
#: Gives a response's connection back to its pool (``reuse``) or closes it.
Release = Callable[..., None]


class TransportError(Exception):
    """The server could not be reached, or the connection broke: nothing usable came back."""


class TlsError(TransportError):
    """The server took the connection, but the TLS handshake failed (it speaks no TLS, or none we accept)."""


class Response:
    """A response whose body is read on demand: whole (:meth:`read`, :attr:`content`) or streamed
    (:meth:`iter_raw`). Close it, or read it to the end, so that its connection can serve the next request."""

    def __init__(self, raw: http.client.HTTPResponse, url: str, release: Release) -> None:
        self._raw = raw
        self._release: Release | None = release
        self._content: bytes | None = None
        self.url = url
        self.status_code = raw.status
        self.reason_phrase = raw.reason
        self.headers = raw.headers

    @property
    def is_success(self) -> bool:
        """A 2xx status."""
        return 200 <= self.status_code < 300

    def read(self) -> bytes:
        """The whole body (read once, then kept)."""
        if self._content is None:
            try:
                self._content = self._raw.read()
            except (OSError, http.client.HTTPException) as err:
                self.close()
                raise TransportError(f"reading the response from {self.url} broke off: {_describe(err)}") from None
            self._done()
        return self._content

    @property
    def content(self) -> bytes:
        """The whole body."""
        return self.read()

    @property
    def text(self) -> str:
        """The body as text (UTF-8 unless the Content-Type names a charset; undecodable bytes replaced)."""
        charset = self.headers.get_content_charset() or "utf-8"
        return self.read().decode(charset, errors="replace")

    def json(self) -> Any:
        """The body decoded as JSON (ValueError when it is not)."""
        return _json.loads(self.read())

    def iter_raw(self, size: int = READ_CHUNK) -> Iterator[bytes]:
        """The body in chunks of up to ``size`` bytes, as it arrives (no content decoding: identity is asked)."""
        if self._content is not None:
            if self._content:
                yield self._content
            return
        while True:
            try:
                chunk = self._raw.read(size)
            except (OSError, http.client.HTTPException) as err:
                self.close()
                raise TransportError(f"reading the response from {self.url} broke off: {_describe(err)}") from None
            if not chunk:
                break
            yield chunk
        self._content = b""
        self._done()

    def _done(self) -> None:
        if self._release is not None:
            release, self._release = self._release, None
            release(reuse=not self._raw.will_close)

    def close(self) -> None:
        """Give the connection back (when the body was read to its end) or close it (when it was not)."""
        if self._release is not None:
            finished = self._raw.isclosed()
            if not finished:
                self._raw.close()
            release, self._release = self._release, None
            release(reuse=finished and not self._raw.will_close)

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _describe(err: BaseException) -> str:
    text = str(err)
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _env(name: str) -> str:
    return os.environ.get(name.lower()) or os.environ.get(name.upper()) or ""


def proxy_for(scheme: str, host: str, port: int) -> str | None:
    """The proxy URL the environment names for ``scheme://host:port``, or None (none set, or NO_PROXY matches)."""
    proxy = _env(f"{scheme}_proxy") or _env("all_proxy")
    if not proxy:
        return None
    host = host.lower().strip("[]")
    for entry in _env("no_proxy").split(","):
        entry = entry.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return None
        name, _, entry_port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
        if entry_port and entry_port != str(port):
            continue
        name = name.lstrip(".").strip("[]")
        if host == name or host.endswith("." + name):
            return None
    return proxy


class HttpClient:
    """Requests over kept-alive connections (one pool per client, safe to share between threads)."""

    def __init__(
        self,
        *,
        verify: bool | ssl.SSLContext | Callable[[], ssl.SSLContext] = True,
        timeout: float = 60.0,
        connect_timeout: float = 15.0,
        headers: Mapping[str, str] | None = None,
        follow_redirects: bool = True,
        trust_env: bool = True,
    ) -> None:
        self._verify = verify
        self._timeout = timeout
        self._connect_timeout = min(connect_timeout, timeout)
        self._headers = dict(headers or {})
        self._follow = follow_redirects
        self._trust_env = trust_env
        self._idle: dict[Origin, list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()

    def _context(self) -> ssl.SSLContext:
        """The TLS context of a new https connection: ``verify``'s, made by its function the first time one is
        needed (a client of http URLs never pays for a CA bundle's parse, ~15-20 ms)."""
        if isinstance(self._verify, ssl.SSLContext):
            return self._verify
        if callable(self._verify):
            return self._verify()
        return client_context(None) if self._verify else unverified_context()

    def _connect(self, origin: Origin) -> http.client.HTTPConnection:
        scheme, host, port = origin
        proxy = proxy_for(scheme, host, port) if self._trust_env else None
        target, target_port = host, port
        tunnel_headers: dict[str, str] = {}
        if proxy:
            parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
            if parts.scheme != "http" or not parts.hostname:
                raise TransportError(f"proxy {proxy!r}: only http:// proxies are supported")
            target, target_port = parts.hostname, parts.port or 80
            if parts.username is not None:
                pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
                tunnel_headers["Proxy-Authorization"] = "Basic " + base64.b64encode(pair).decode()
        conn: http.client.HTTPConnection
        if scheme == "https":
            conn = http.client.HTTPSConnection(
                target, target_port, timeout=self._connect_timeout, context=self._context()
            )
            if proxy:
                conn.set_tunnel(host, port, headers=tunnel_headers)
        else:
            conn = http.client.HTTPConnection(target, target_port, timeout=self._connect_timeout)
        try:
            conn.connect()
        except (OSError, http.client.HTTPException) as err:
            conn.close()
            via = f" via proxy {target}:{target_port}" if proxy else ""
            kind = TlsError if isinstance(err, ssl.SSLError) else TransportError
            raise kind(f"cannot connect to {scheme}://{host}:{port}{via}: {_describe(err)}") from None
        if conn.sock is not None:
            conn.sock.settimeout(self._timeout)
        return conn

    def _take(self, origin: Origin) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            idle = self._idle.get(origin)
            if idle:
                return idle.pop(), True
        return self._connect(origin), False

    def _releaser(self, origin: Origin, conn: http.client.HTTPConnection) -> Release:
        def release(*, reuse: bool) -> None:
            if reuse:
                with self._lock:
                    self._idle.setdefault(origin, []).append(conn)
            else:
                conn.close()

        return release

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        content: Body = None,
        json: Any = None,
        stream: bool = False,
        auth: tuple[str, str] | None = None,
    ) -> Response:
        """Send a request (a ``content`` body, or ``json`` encoded) and follow redirects; the body is read before
        returning unless ``stream``."""
        sent = {**self._headers, **(headers or {})}
        if json is not None:
            content = _json.dumps(json, separators=(",", ":")).encode()
            sent.setdefault("Content-Type", "application/json")
        if auth is not None:
            pair = f"{auth[0]}:{auth[1]}".encode()
            sent["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        for _ in range(MAX_REDIRECTS + 1):
            response = self._send_once(method, url, sent, content)
            location = response.headers.get("Location")
            if not (self._follow and response.status_code in REDIRECTS and location):
                if not stream:
                    response.read()
                return response
            response.close()
            target = urljoin(url, location)
            if _origin(target) != _origin(url):
                sent = {k: v for k, v in sent.items() if k.lower() != "authorization"}
            if (response.status_code == 303 and method != "HEAD") or (
                response.status_code in (301, 302) and method == "POST"
            ):
                method, content = "GET", None
                sent = {k: v for k, v in sent.items() if k.lower() not in ("content-length", "content-type")}
            url = target
        raise TransportError(f"more than {MAX_REDIRECTS} redirects from {url}")

    def _send_once(self, method: str, url: str, headers: dict[str, str], content: Body) -> Response:
        origin = _origin(url)
        parts = urlsplit(url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        replayable = content is None or isinstance(content, bytes | bytearray)
        while True:
            conn, reused = self._take(origin)
            # plain http through a proxy names the whole URL; https through one tunnels and names the path
            proxied = origin[0] == "http" and (conn.host, conn.port) != origin[1:]
            target = url if proxied else path
            try:
                conn.request(method, target, body=content, headers=headers)
                raw = conn.getresponse()
            except (OSError, http.client.HTTPException) as err:
                conn.close()
                if reused and replayable:
                    continue  # the server closed the idle connection: once more, on a new one
                raise TransportError(f"{method} {url} failed: {_describe(err)}") from None
            return Response(raw, url, self._releaser(origin, conn))

    def get(self, url: str, **kwargs: Any) -> Response:
        """``GET url``."""
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> Response:
        """``POST url``."""
        return self.request("POST", url, **kwargs)

    def close(self) -> None:
        """Close every idle connection (responses still open close theirs when they are closed)."""
        with self._lock:
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _origin(url: str) -> Origin:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise TransportError(f"{url!r} is not an http or https URL")
    return scheme, parts.hostname, parts.port or (443 if scheme == "https" else 80)
