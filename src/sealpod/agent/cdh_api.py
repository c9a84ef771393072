"""Confidential-data-hub's resource API for the workload, served by the attested enclave.

``GET http://127.0.0.1:8006/cdh/resource/<repository>/<type>/<tag>`` answers the resource's plaintext from the KBS
through the enclave's attested session (its token reused; a new handshake when the KBS answers 401), as CoCo's
``api-server-rest`` does in a pod VM, so that an application written for CoCo reads its secrets unchanged:

- 200 ``application/octet-stream``: the resource;
- 500 with the error's text: the KBS refused it (its resource policy, or no such resource), as CDH answers;
- 403 ``Forbidden``: the tenant's run policy does not list the resource (``cdh_resources``);
- 404 ``URL NOT FOUND``: any other path; ``/aa/...`` gives CDH's ``Attestation Feature Not Enabled`` (the
  enclave's token and TEE key stay in the enclave); 405 for a method other than GET;
- ``GET /info``: ``{"version": ..., "tee": ..., "feature": "resource"}``.

The listening socket is made in the workload's own network namespace (on its loopback), so nothing on the host
and no other enclave can connect; only the workload (and, in a Kubernetes pod, the pod's other containers, which
share its network) can.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import socket
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sealpod import __version__
from sealpod.errors import SealpodError
from sealpod.kbs.client.protocol import check_resource_path

PORT = 8006
RESOURCE_PREFIX = "/cdh/resource/"
log = logging.getLogger(__name__)

#: Resource path (``repository/type/tag``) in, plaintext out; raises SealpodError when the KBS refuses.
ResourceGetter = Callable[[str], bytes]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64
    timeout = 0  # handle_request after the selector saw the listener ready: never block on a vanished connection

    def __init__(self, listener: socket.socket, api: CdhApi) -> None:
        super().__init__(listener.getsockname()[:2], _Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = listener
        self.api = api


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    wbufsize = -1  # buffered: the status line, headers and body leave in one write when the request is done
    server_version = f"sealpod-cdh/{__version__}"

    def setup(self) -> None:
        super().setup()
        # without this, Nagle's algorithm and the client's delayed ACK can add 40 ms to an answer
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("cdh api: " + format, *args)

    def do_GET(self) -> None:
        status, content_type, body = self.server.api.answer("GET", self.path)
        self._send(status, content_type, body)

    def _refuse_method(self) -> None:
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, "text/plain", b"Method Not Allowed")

    do_POST = do_PUT = do_DELETE = do_PATCH = _refuse_method

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class CdhApi:
    """The API over ``get`` (the enclave's KBS session); ``allowed`` is the run policy's list of resource paths
    (None: any the KBS releases)."""

    def __init__(self, get: ResourceGetter, tee: str, allowed: frozenset[str] | None = None) -> None:
        self.get = get
        self.tee = tee
        self.allowed = allowed
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._wake: tuple[int, int] | None = None

    def answer(self, method: str, target: str) -> tuple[int, str, bytes]:
        """Status, content type and body for ``method target`` (what the HTTP handler sends)."""
        path = target.split("?", 1)[0]
        if path == "/info":
            import json

            info = {"version": __version__, "tee": self.tee, "feature": "resource"}
            return 200, "application/json", json.dumps(info).encode()
        if path.startswith("/aa/") or path == "/aa":
            return 404, "text/plain", b"Attestation Feature Not Enabled"
        if not path.startswith(RESOURCE_PREFIX):
            return 404, "text/plain", b"URL NOT FOUND"
        parts = path[len(RESOURCE_PREFIX) :].split("/")
        try:
            if len(parts) != 3:
                raise SealpodError(f"a resource path is <repository>/<type>/<tag>, not {'/'.join(parts)!r}")
            resource = check_resource_path(*parts)
        except SealpodError as err:
            return 500, "text/plain", str(err).encode()
        if self.allowed is not None and resource not in self.allowed:
            return 403, "text/plain", b"Forbidden: the tenant's run policy does not list this resource"
        try:
            return 200, "application/octet-stream", self.get(resource)
        except SealpodError as err:
            return 500, "text/plain", str(err).encode()

    def serve(self, listener: socket.socket) -> None:
        """Answer on ``listener`` (bound and listening) in background threads until :meth:`close`."""
        self._server = _Server(listener, self)
        self._wake = os.pipe()
        self._thread = threading.Thread(target=self._accept, args=(self._server, self._wake[0]), name="cdh-api")
        self._thread.daemon = True
        self._thread.start()

    @staticmethod
    def _accept(server: _Server, wake: int) -> None:
        """Hand each connection to the server until ``wake`` is readable: no polling while idle, and :meth:`close`
        returns at once (socketserver's serve_forever wakes every 0.5 s and makes its shutdown wait for that)."""
        with selectors.DefaultSelector() as selector:
            selector.register(server.socket, selectors.EVENT_READ)
            selector.register(wake, selectors.EVENT_READ)
            while all(key.fd != wake for key, _ in selector.select()):
                server.handle_request()

    def close(self) -> None:
        """Stop serving and close the socket."""
        if self._server is None or self._wake is None or self._thread is None:
            return
        os.write(self._wake[1], b"x")
        self._thread.join()
        for fd in self._wake:
            os.close(fd)
        with contextlib.suppress(OSError):
            self._server.server_close()
        self._server = self._wake = self._thread = None
