"""One keep-alive HTTP/1.1 connection for the hot path of a KBS client: resource GETs with a warm token.

httpx builds a request, a URL and header models per call (~0.5 ms of Python for a 32-byte resource); the
workload's CDH API makes one such call per secret it reads. This sends the same request over one
``http.client`` connection kept open, with the same TLS verification as the client's httpx one. A connection the
server closed while idle is reopened once, without counting as a failure.
"""

from __future__ import annotations

import http.client
import ssl
from urllib.parse import urlsplit


class KeepAliveConnection:
    """GETs to ``url``'s server over one reused connection; ``verify`` as httpx's (False or a context)."""

    def __init__(self, url: str, verify: bool | ssl.SSLContext, timeout: float) -> None:
        parts = urlsplit(url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (443 if self._https else 80)
        self._base = parts.path.rstrip("/")
        self._timeout = timeout
        if self._https and not isinstance(verify, ssl.SSLContext):
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            verify = context
        self._context = verify if isinstance(verify, ssl.SSLContext) else None
        self._conn: http.client.HTTPConnection | None = None

    def _connect(self) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(self._host, self._port, timeout=self._timeout, context=self._context)
        return http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)

    def get(self, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
        """Status and body of ``GET path``; raises OSError or http.client.HTTPException when the server cannot be
        reached (after one reconnect of a connection that was idle)."""
        for reused in (True, False):
            if self._conn is None:
                self._conn, reused = self._connect(), False
            try:
                self._conn.request("GET", self._base + path, headers=headers)
                response = self._conn.getresponse()
                body = response.read()
            except (OSError, http.client.HTTPException):
                self.close()
                if reused:
                    continue  # the server closed the idle connection: one more try on a new one
                raise
            if response.will_close:
                self.close()
            return response.status, body
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Close the connection (the next GET opens a new one)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
