"""The KBS client's keep-alive connection for resource GETs: reused while the server keeps it, reopened once when the
server closed it while idle, and a server that is gone is an error, not a retry loop."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sealpod.kbs.client.keepalive import KeepAliveConnection


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 0.3  # the server drops a connection idle this long
    connections = 0  # one handler per connection: counted as each starts

    def setup(self) -> None:
        _Handler.connections += 1
        super().setup()

    def do_GET(self) -> None:
        body = f"{self.path} {self.headers['Authorization']}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    _Handler.connections = 0
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def test_gets_reuse_one_connection_and_survive_an_idle_close(server: ThreadingHTTPServer) -> None:
    conn = KeepAliveConnection(f"http://127.0.0.1:{server.server_address[1]}/base", False, 5.0)
    try:
        for _ in range(5):
            assert conn.get("/r", {"Authorization": "Bearer t"}) == (200, b"/base/r Bearer t")
        assert _Handler.connections == 1  # one handler: one connection for all five
        time.sleep(0.6)  # the server closes the idle connection
        assert conn.get("/again", {"Authorization": "Bearer u"}) == (200, b"/base/again Bearer u")
        assert _Handler.connections == 2
    finally:
        conn.close()


def test_a_server_that_is_gone_is_an_error(server: ThreadingHTTPServer) -> None:
    port = server.server_address[1]
    server.shutdown()
    server.server_close()
    conn = KeepAliveConnection(f"http://127.0.0.1:{port}", False, 2.0)
    with pytest.raises(ConnectionRefusedError):
        conn.get("/r", {})
