"""The workload's network namespace, made (or joined) by the enclave before the workload starts, so that the enclave
can listen on the workload's loopback (the CDH API) while its own sockets (to the KBS, the registry) stay in the
enclave's namespace.

A network namespace is per thread: a short-lived thread enters it (a new one: ``unshare``, loopback brought up; a
pod's: ``setns``), makes the listening socket there and keeps a descriptor of the namespace; the workload then joins
that namespace by the descriptor's ``/proc`` path. The socket and the descriptor keep the namespace alive.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import struct
import threading
from dataclasses import dataclass

from sealpod.enclave import linux
from sealpod.errors import SealpodError

_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1


@dataclass
class WorkloadNetwork:
    """The namespace the workload joins (a ``/proc`` path), and the socket listening on its loopback (None when the
    port was taken: another enclave of the same pod serves it)."""

    netns: str
    listener: socket.socket | None
    _fd: int | None = None

    def close(self) -> None:
        """Close the listener and the namespace's descriptor."""
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock.fileno(), _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock.fileno(), _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))


def _listen(port: int) -> socket.socket | None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(64)
    except OSError as err:
        sock.close()
        if err.errno == 98:  # EADDRINUSE: the pod's network already has a server there (another of its enclaves)
            return None
        raise
    return sock


def workload_network(port: int, join: str | None = None) -> WorkloadNetwork:
    """A new network namespace for the workload (``join`` None) or the pod's at ``join``, with a socket listening on
    127.0.0.1:``port`` in it."""
    result: dict[str, object] = {}

    def enter() -> None:
        try:
            if join is None:
                linux.unshare(linux.CLONE_NEWNET)
                _loopback_up()
            else:
                fd = os.open(join, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    linux.setns(fd, linux.CLONE_NEWNET)
                finally:
                    os.close(fd)
            result["listener"] = _listen(port)
            if join is None:
                result["fd"] = os.open(
                    f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY | os.O_CLOEXEC
                )
        except (OSError, SealpodError) as err:
            result["error"] = err

    thread = threading.Thread(target=enter, name="workload-netns")
    thread.start()
    thread.join()
    error = result.get("error")
    if isinstance(error, BaseException):
        raise SealpodError(f"cannot make the workload's network namespace and its API socket: {error}") from None
    listener = result.get("listener")
    assert listener is None or isinstance(listener, socket.socket)
    fd = result.get("fd")
    if isinstance(fd, int):
        return WorkloadNetwork(f"/proc/{os.getpid()}/fd/{fd}", listener, fd)
    assert join is not None
    return WorkloadNetwork(join, listener)
