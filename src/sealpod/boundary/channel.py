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

import os
import struct
from _socket import CMSG_LEN, MSG_CTRUNC, MSG_TRUNC, SCM_RIGHTS, SOL_SOCKET

from sealpod.boundary import jsontext
from sealpod.errors import SealpodError

TYPE_CHECKING = False  # typing's own flag would import typing (~2 ms); mypy honours any flag of this name
if TYPE_CHECKING:
    from _socket import socket
    from typing import Any

MAX_MESSAGE = 1024 * 1024
STDIO_FDS = 3

#: A file descriptor in SCM_RIGHTS data: a C int. (This module uses the C socket type's own methods, not the socket
#: module, whose import is ~4 ms of ``sealpod run``'s client; any socket.socket is one.)
_FD = struct.Struct("i")


class ChannelError(SealpodError):
    """The other end sent something that is not a channel message, or went away."""


class ChannelClosed(ChannelError):
    """The other end closed the channel (or its process ended)."""


def send_message(sock: socket, message: dict[str, Any], fds: list[int] | None = None) -> None:
    """Send one JSON message (with ``fds`` attached when given)."""
    payload = jsontext.dumps(message).encode()
    if len(payload) > MAX_MESSAGE:
        raise ChannelError(f"channel message of {len(payload)} bytes is over the {MAX_MESSAGE}-byte limit")
    if fds:
        sock.sendmsg([payload], [(SOL_SOCKET, SCM_RIGHTS, b"".join(_FD.pack(fd) for fd in fds))])
    else:
        sock.send(payload)


def receive_message(sock: socket, max_fds: int = 0) -> tuple[dict[str, Any], list[int]]:
    """Receive one JSON object message and the descriptors attached to it; refuses anything else by what it is."""
    data, ancillary, flags, _ = sock.recvmsg(MAX_MESSAGE + 1, CMSG_LEN(max_fds * _FD.size))
    fds = [
        fd
        for level, kind, fd_data in ancillary
        if level == SOL_SOCKET and kind == SCM_RIGHTS
        for (fd,) in _FD.iter_unpack(fd_data[: len(fd_data) - len(fd_data) % _FD.size])
    ]
    try:
        if not data:
            raise ChannelClosed("the other end closed the channel")
        if flags & (MSG_TRUNC | MSG_CTRUNC) or len(data) > MAX_MESSAGE:
            raise ChannelError(
                f"channel message truncated (over the {MAX_MESSAGE}-byte limit, or too many file descriptors)"
            )
        try:
            message = jsontext.loads(data)
        except ValueError as err:
            raise ChannelError(f"channel message is not JSON: {err}") from None
        if not isinstance(message, dict):
            raise ChannelError(f"channel message is a JSON {type(message).__name__}, not an object")
    except ChannelError:
        for fd in fds:
            os.close(fd)
        raise
    return message, fds


def expect_int(message: dict[str, Any], key: str) -> int:
    """``message[key]`` as an int, or a :class:`ChannelError` naming what came instead."""
    value = message.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ChannelError(f"expected {key!r} (an integer) from the enclave, got {message!r:.200}")
    return value
