"""A pre-launched enclave: started ahead of demand by the node's enclave pool, already imported and measured, it
waits for exactly one request, runs it as :func:`sealpod.enclave.boot.boot` would, and exits.

A pre-launched enclave is a fork of the zygote (below) holding its end of a socket pair with the pool. It
says ``{"ready": PID}`` on it, then receives the connection of one ``sealpod run`` (as an SCM_RIGHTS descriptor) and
talks :mod:`sealpod.boundary.channel` on it: the request and the host's stdio in, its pid and the exit status out.
It holds nothing of a request before it gets one (attestation, keys and the rootfs are all per request), so a
pre-launched enclave is the same generic enclave a fresh one is, started earlier.

``python -m sealpod.enclave --zygote FD``: the pool's enclave maker. It imports and measures the enclave program
once, then for each ``{"fork": true}`` on FD (with a new channel's end attached) forks a pre-launched enclave that
serves that channel as above. A fork costs milliseconds where a new interpreter costs its imports (~0.3 s), and the
forks share the zygote's code and imported modules copy-on-write: the pages a request does not write stay one copy
on the node. The zygote itself never receives a request, so a fork starts with the program and nothing else; each
makes its own TEE key, session and rootfs (OpenSSL's and Python's random generators reseed in a forked child). On SGX
hardware a fork is a new enclave (Gramine copies the parent's state into it), so the sharing is the simulated
platform's; the import time is saved on both.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import os
import signal
import socket
import sys
import threading
import traceback
from typing import NoReturn

from sealpod._internal.tls import client_context
from sealpod.agent.pull import preload as preload_pull
from sealpod.boundary.channel import STDIO_FDS, ChannelClosed, ChannelError, receive_message, send_message
from sealpod.boundary.request import BootRequest
from sealpod.enclave.boot import boot_reporting, terminate_on_sigterm
from sealpod.enclave.measure import running_identity
from sealpod.errors import SealpodError

#: After the host went away: a SIGTERM (forwarded to the workload), then another this much later (kills it).
HOST_GONE_GRACE = 10.0
#: The same for an OCI runtime's container: its host process is what the runtime reported as the container, and
#: containerd takes it for dead; the runtime's delete kills what is left in the container's cgroup anyway.
RUNTIME_HOST_GONE_GRACE = 1.0


#: Modules a request's first call would import: the codecs of name resolution and of JCS's key order, what
#: cryptography's ECDSA loads on first use (~4 ms of a pre-launched enclave's first attestation), and the TOML
#: parser of a pod's init-data.
FIRST_USE_MODULES = ("encodings.idna", "encodings.utf_16_be", "cryptography.hazmat.backends.openssl", "tomllib")


def warm_up() -> None:
    """The per-process work a request would otherwise pay for: the measurement, the default TLS context (the CA
    bundle's parse), what a pull imports on first use and :data:`FIRST_USE_MODULES`. Nothing of a request: no key,
    no connection, no platform secret."""
    running_identity()
    client_context(None)
    preload_pull()
    for name in FIRST_USE_MODULES:
        importlib.import_module(name)


def zygote(control_fd: int) -> int:
    """Fork a pre-launched enclave for each channel the pool sends on ``control_fd``, until the pool closes it."""
    control = socket.socket(fileno=control_fd)
    warm_up()
    gc.collect()
    gc.freeze()  # the collector leaves the imported objects' pages alone in the forks
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the forks: their status goes to sealpod run
    try:
        send_message(control, {"ready": os.getpid()})
        while True:
            message, fds = receive_message(control, max_fds=1)
            if len(fds) != 1 or message.get("fork") is not True:
                for fd in fds:
                    os.close(fd)
                raise ChannelError(f"the pool sent {message!r:.200} with {len(fds)} descriptors, not a fork request")
            if os.fork() == 0:
                _forked(control, fds[0])
            os.close(fds[0])
    except ChannelClosed:
        return 0  # the pool is shutting down
    except (ChannelError, OSError) as err:
        print(f"sealpod enclave zygote: {err}", file=sys.stderr)
        return 125
    finally:
        control.close()


def _forked(control: socket.socket, channel_fd: int) -> NoReturn:
    """The fork's life: a pre-launched enclave on ``channel_fd``; it never returns into the zygote's loop."""
    code = 125
    try:
        control.close()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the enclave waits for its own gocryptfs and workload
        os.setsid()
        code = serve(channel_fd)
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def serve(channel_fd: int) -> int:
    """Wait on the pool's channel for one connection, run its request; returns the exit status (the zygote warmed
    this process up before it forked)."""
    channel = socket.socket(fileno=channel_fd)
    try:
        send_message(channel, {"ready": os.getpid()})
        _, handed = receive_message(channel, max_fds=1)
    except (ChannelError, BrokenPipeError, ConnectionResetError):
        return 0  # the pool closed the channel: it is shutting down
    except (SealpodError, OSError) as err:
        print(f"sealpod enclave: pre-launch failed: {err}", file=sys.stderr)
        return 125
    finally:
        channel.close()
    if len(handed) != 1:
        for fd in handed:
            os.close(fd)
        print("sealpod enclave: the pool handed over no connection", file=sys.stderr)
        return 125
    with socket.socket(fileno=handed[0]) as connection:
        return _run_connection(connection)


def _run_connection(connection: socket.socket) -> int:
    try:
        message, fds = receive_message(connection, max_fds=STDIO_FDS + 1)
    except (ChannelError, OSError) as err:
        _reply(connection, {"error": f"no request: {err}"})
        return 125
    try:
        request = _parse_request(message, fds)
    except SealpodError as err:
        for fd in fds:
            os.close(fd)
        _reply(connection, {"error": str(err)})
        return 125
    sys.stdout.flush()
    sys.stderr.flush()
    for target, fd in enumerate(fds[:STDIO_FDS]):
        os.dup2(fd, target)
        os.close(fd)
    terminate_on_sigterm()
    _reply(connection, {"pid": os.getpid()})
    finished = threading.Event()
    grace = RUNTIME_HOST_GONE_GRACE if request.start_fd is not None else HOST_GONE_GRACE  # a runtime's: a FIFO
    threading.Thread(target=_watch_host, args=(connection, finished, grace), daemon=True).start()
    code = boot_reporting(request)
    sys.stdout.flush()
    sys.stderr.flush()
    finished.set()
    _reply(connection, {"exit": code})
    return code


def _parse_request(message: dict[str, object], fds: list[int]) -> BootRequest:
    """The request, its start FIFO (``start_fd`` 3: the descriptor after stdio) replaced by the one received."""
    request = BootRequest.from_values(message)
    if request.start_fd is None:
        if len(fds) != STDIO_FDS:
            raise SealpodError(f"the request carried {len(fds)} descriptors, not stdin, stdout and stderr")
        return request
    if request.start_fd != STDIO_FDS or len(fds) != STDIO_FDS + 1:
        raise SealpodError(
            f"a request with a start FIFO carries it after stdin, stdout and stderr (start_fd {STDIO_FDS}), "
            f"not as start_fd {request.start_fd} with {len(fds)} descriptors"
        )
    return request.replace(start_fd=fds[STDIO_FDS])


def _reply(connection: socket.socket, message: dict[str, object]) -> None:
    with contextlib.suppress(OSError):  # the host went away; _watch_host ends the run
        send_message(connection, message)


def _watch_host(connection: socket.socket, finished: threading.Event, grace: float) -> None:
    """The host closing its end (or sending anything more) ends the run, as a killed parent would: a SIGTERM, and
    after ``grace`` seconds another (on which the workload is killed)."""
    with contextlib.suppress(OSError):
        connection.recv(1)
    if finished.is_set():
        return
    os.kill(os.getpid(), signal.SIGTERM)
    if not finished.wait(grace):
        os.kill(os.getpid(), signal.SIGTERM)
