"""The host/enclave channel refuses what is not one whole JSON object message, and closes any descriptor that came
with a refused one (the host chooses everything that crosses it)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

from sealpod.boundary.channel import MAX_MESSAGE, ChannelClosed, ChannelError, receive_message, send_message


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    host, enclave = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with host, enclave:
        yield host, enclave


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_a_message_and_its_descriptors_cross_whole(pair: tuple[socket.socket, socket.socket]) -> None:
    host, enclave = pair
    read_end, write_end = os.pipe()
    try:
        send_message(host, {"image": "r/a:v1", "n": 3}, [write_end])
        message, fds = receive_message(enclave, max_fds=1)
        assert message == {"image": "r/a:v1", "n": 3}
        (received,) = fds
        os.write(received, b"through")  # the same pipe, another descriptor
        os.close(received)
        assert os.read(read_end, 16) == b"through"
    finally:
        os.close(read_end)
        os.close(write_end)


def test_more_descriptors_than_asked_for_are_refused_and_closed(pair: tuple[socket.socket, socket.socket]) -> None:
    host, enclave = pair
    read_end, write_end = os.pipe()
    try:
        before = _open_fds()
        send_message(host, {"fork": True}, [read_end, write_end, read_end])
        with pytest.raises(ChannelError, match="truncated"):
            receive_message(enclave, max_fds=1)
        assert _open_fds() == before  # the one descriptor that fitted was closed again
    finally:
        os.close(read_end)
        os.close(write_end)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"{not json", "channel message is not JSON: Expecting property name"),
        (b'["a", "list"]', "channel message is a JSON list, not an object"),
        (b"\xff\xfe", "channel message is not JSON"),
        # valid JSON one byte over the limit (it fits the receive buffer: the length itself must refuse it), and more
        (b'{"x": "' + b"y" * (MAX_MESSAGE - 8) + b'"}', "over the 1048576-byte limit"),
        (b"x" * (MAX_MESSAGE + 100), "over the 1048576-byte limit"),
    ],
)
def test_what_is_not_one_json_object_is_refused_by_what_it_is(
    pair: tuple[socket.socket, socket.socket], payload: bytes, message: str
) -> None:
    host, enclave = pair
    host.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * MAX_MESSAGE)
    host.send(payload)
    with pytest.raises(ChannelError, match=message):
        receive_message(enclave)


def test_a_closed_channel_and_an_oversized_message_are_named(pair: tuple[socket.socket, socket.socket]) -> None:
    host, enclave = pair
    with pytest.raises(ChannelError, match="over the 1048576-byte limit"):
        send_message(host, {"x": "y" * MAX_MESSAGE})
    host.close()
    with pytest.raises(ChannelClosed, match="closed the channel"):
        receive_message(enclave)
