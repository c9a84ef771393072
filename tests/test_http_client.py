"""sealpod's HTTP client (every registry and KBS call): connections reused while the server keeps them and reopened
once when it closed them while idle; redirects followed with the token kept off other origins; streams that are not
read to the end not reused; proxies from the environment; transport failures named."""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sealpod._internal.http_client import HttpClient, TlsError, TransportError, proxy_for


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 0.3  # the server drops a connection idle this long
    connections = 0  # one handler per connection: counted as each starts

    def setup(self) -> None:
        _Handler.connections += 1
        super().setup()

    def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _route(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path.startswith("/to/"):  # /to/<status>/<url-or-path>
            _, _, status, target = self.path.split("/", 3)
            self._answer(int(status), b"moved", {"Location": target if "://" in target else "/" + target})
        elif self.path == "/big":
            self._answer(200, b"x" * 3_000_000)
        elif self.path.startswith("http://"):  # a proxy's absolute-URL request
            self._answer(200, f"proxied {self.path}".encode())
        else:
            self._answer(200, f"{self.command} {self.path} {self.headers['Authorization']} {body.decode()}".encode())

    do_GET = do_POST = do_HEAD = do_PUT = _route

    def log_message(self, format: str, *args: object) -> None:
        pass


def _serve() -> ThreadingHTTPServer:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    _Handler.connections = 0
    httpd = _serve()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _url(server: ThreadingHTTPServer, path: str = "") -> str:
    return f"http://127.0.0.1:{server.server_address[1]}{path}"


def test_requests_reuse_one_connection_and_survive_an_idle_close(server: ThreadingHTTPServer) -> None:
    with HttpClient(verify=False, trust_env=False) as http:
        for _ in range(3):
            assert http.get(_url(server, "/r"), headers={"Authorization": "Bearer t"}).content == b"GET /r Bearer t "
        assert http.request("HEAD", _url(server, "/h")).status_code == 200
        assert http.post(_url(server, "/p"), json={"a": 1}).content == b'POST /p None {"a":1}'
        assert _Handler.connections == 1  # one handler: one connection for all five
        time.sleep(0.6)  # the server closes the idle connection
        assert http.get(_url(server, "/again")).content == b"GET /again None "
        assert _Handler.connections == 2


def test_a_stream_closed_early_is_not_reused_and_one_read_through_is(server: ThreadingHTTPServer) -> None:
    with HttpClient(verify=False, trust_env=False) as http:
        with http.get(_url(server, "/big"), stream=True) as response:
            first = next(response.iter_raw(65536))
            assert first == b"x" * 65536
        assert http.get(_url(server, "/next")).content == b"GET /next None "  # not the rest of /big
        assert _Handler.connections == 2
        with http.get(_url(server, "/big"), stream=True) as response:
            assert sum(len(chunk) for chunk in response.iter_raw()) == 3_000_000
        http.get(_url(server, "/after"))
        assert _Handler.connections == 2


def test_redirects_keep_the_token_on_the_origin_only_and_303_becomes_get(server: ThreadingHTTPServer) -> None:
    other = _serve()
    try:
        away = _url(other, "/blob")
        with HttpClient(verify=False, trust_env=False) as http:
            same = http.get(_url(server, "/to/307/here"), headers={"Authorization": "Bearer t"})
            assert same.content == b"GET /here Bearer t "
            moved = http.get(_url(server, f"/to/302/{away}"), headers={"Authorization": "Bearer t"})
            assert moved.content == b"GET /blob None "  # the registry's token never reaches the storage service
            assert moved.url == away
            posted = http.post(_url(server, "/to/303/result"), json={"a": 1})
            assert posted.content == b"GET /result None "
            assert http.get(_url(server, "/to/301/to/301/x")).content == b"GET /x None "
        with HttpClient(verify=False, trust_env=False, follow_redirects=False) as http:
            assert http.get(_url(server, "/to/302/x")).status_code == 302
    finally:
        other.shutdown()
        other.server_close()


def test_a_redirect_loop_is_refused(server: ThreadingHTTPServer) -> None:
    with HttpClient(verify=False, trust_env=False) as http, pytest.raises(TransportError, match="more than 20"):
        http.get(_url(server, "/to/302/to/302/to/302/" + "to/302/" * 20 + "x"))


def test_proxies_come_from_the_environment(server: ThreadingHTTPServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", _url(server))
    monkeypatch.setenv("NO_PROXY", "internal.example, .corp.example:5000")
    assert proxy_for("http", "registry.example", 80) == _url(server)
    assert proxy_for("http", "internal.example", 80) is None
    assert proxy_for("http", "a.corp.example", 5000) is None
    assert proxy_for("http", "a.corp.example", 443) == _url(server)
    assert proxy_for("https", "registry.example", 443) is None  # only HTTP_PROXY is set
    with HttpClient(verify=False) as http:
        answer = http.get("http://registry.example/v2/")
    assert answer.content == b"proxied http://registry.example/v2/"
    monkeypatch.setenv("NO_PROXY", "*")
    assert proxy_for("http", "registry.example", 80) is None


def test_a_server_that_is_gone_is_a_transport_error_naming_it(server: ThreadingHTTPServer) -> None:
    url = _url(server, "/r")
    server.shutdown()
    server.server_close()
    with HttpClient(verify=False, trust_env=False) as http, pytest.raises(TransportError, match="cannot connect to"):
        http.get(url)
    with HttpClient(trust_env=False) as http, pytest.raises(TransportError, match="not an http or https URL"):
        http.get("ftp://example/x")


def test_a_verifying_context_is_made_only_for_an_https_connection(server: ThreadingHTTPServer) -> None:
    # loading a CA bundle is ~15-20 ms of every enclave's start: a client of http URLs must never pay for it
    made: list[str] = []

    def context() -> ssl.SSLContext:
        made.append("context")
        return ssl.create_default_context()

    with HttpClient(verify=context, trust_env=False) as http:
        assert http.get(_url(server, "/r")).status_code == 200
        assert made == []
        # this server speaks no TLS: the handshake fails, after the context was made for it, and says so
        with pytest.raises(TlsError, match=r"cannot connect to https://127\.0\.0\.1"):
            http.get(_url(server, "/r").replace("http://", "https://"))
        assert made == ["context"]
