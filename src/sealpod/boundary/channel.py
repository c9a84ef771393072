"""The channel between ``sealpod run`` and a pre-launched enclave: one Unix SOCK_SEQPACKET connection.

Shared by the host side (:mod:`sealpod.runtime.enclave_pool`), which sends, and the enclave, which answers. Messages
are whole datagrams of JSON, nothing secret:

1. host -> enclave: the :class:`~sealpod.boundary.request.BootRequest` JSON, with the host's stdin, stdout and stderr as
   SCM_RIGHTS file descriptors (the workload's stdio, as when the enclave is the host's child);
2. enclave -> host: ``{"pid": N}`` once it took the request (the host forwards its signals to that process);
3. enclave -> host: ``{"exit": STATUS}`` when the workload ended (128 + signal number when a signal ended it).

The enclave treats the host closing the connection as a SIGTERM: a foreground run that is killed takes its workload
down with it, as a child enclave would.
"""

from __future__ import annotations

import json
import socket
from typing import Any

from sealpod.errors import SealpodError

MAX_MESSAGE = 1024 * 1024
STDIO_FDS = 3


class ChannelError(SealpodError):
    """The other end sent something that is not a channel message, or went away."""


class ChannelClosed(ChannelError):
    """The other end closed the channel (or its process ended)."""


def send_message(sock: socket.socket, message: dict[str, Any], fds: list[int] | None = None) -> None:
    """Send one JSON message (with ``fds`` attached when given)."""
    payload = json.dumps(message).encode()
    if len(payload) > MAX_MESSAGE:
        raise ChannelError(f"channel message of {len(payload)} bytes is over the {MAX_MESSAGE}-byte limit")
    if fds:
        socket.send_fds(sock, [payload], fds)
    else:
        sock.send(payload)


def receive_message(sock: socket.socket, max_fds: int = 0) -> tuple[dict[str, Any], list[int]]:
    """Receive one JSON object message and the descriptors attached to it; refuses anything else by what it is."""
    data, fds, flags, _ = socket.recv_fds(sock, MAX_MESSAGE + 1, max_fds)
    try:
        if not data:
            raise ChannelClosed("the other end closed the channel")
        if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
            raise ChannelError("channel message truncated (too long, or too many file descriptors)")
        try:
            message = json.loads(data)
        except ValueError as err:
            raise ChannelError(f"channel message is not JSON: {err}") from None
        if not isinstance(message, dict):
            raise ChannelError(f"channel message is a JSON {type(message).__name__}, not an object")
    except ChannelError:
        for fd in fds:
            socket.close(fd)
        raise
    return message, fds


def expect_int(message: dict[str, Any], key: str) -> int:
    """``message[key]`` as an int, or a :class:`ChannelError` naming what came instead."""
    value = message.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ChannelError(f"expected {key!r} (an integer) from the enclave, got {message!r:.200}")
    return value
