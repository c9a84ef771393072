"""The CDH API's server: it answers on its listener and, once closed, is gone at once."""

from __future__ import annotations

import http.client
import json
import socket

import pytest

from sealpod.agent.cdh_api import CdhApi


def test_the_api_answers_and_after_close_its_port_refuses_connections() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    api = CdhApi(lambda path: f"secret of {path}".encode(), "sample", frozenset({"default/key/1"}))
    api.serve(listener)
    try:
        for path, status, body in (
            ("/info", 200, None),
            ("/cdh/resource/default/key/1", 200, b"secret of default/key/1"),
            ("/cdh/resource/default/key/2", 403, None),
        ):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", path)
            response = connection.getresponse()
            answer = response.read()
            connection.close()
            assert response.status == status, path
            if body is not None:
                assert answer == body
            if path == "/info":
                assert json.loads(answer)["tee"] == "sample"
    finally:
        api.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5)
    api.close()  # a second close is harmless
