"""Pre-launched enclaves: a node daemon that keeps generic enclaves started and waiting (its client, what
``sealpod run`` and ``sealpod-runtime`` use, is :mod:`sealpod.runtime.pool_client`).

Starting the enclave program costs its interpreter start, imports and measurement (~0.25 s here), every time: on SGX
hardware, loading and measuring an enclave costs far more. The pool (``sealpod node enclave-pool``) keeps ``size``
enclaves (:mod:`sealpod.enclave.prelaunch`) ready; ``sealpod run`` connects to its socket, the pool hands the
connection to a ready enclave and starts a replacement, and from then on ``sealpod run`` and that enclave talk
directly (:mod:`sealpod.boundary.channel`). The pool only passes connections: it never reads a request, and each
enclave serves one request and exits, so no state passes from one container to the next.

The socket is ``<state dir>/enclave-pool.sock``, mode 0600: whoever may connect may run images, as whoever may run
``sealpod run`` may.
"""

from __future__ import annotations

import contextlib
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sealpod.boundary.channel import ChannelError, expect_int, receive_message, send_message
from sealpod.errors import SealpodError
from sealpod.runtime.launch import enclave_program

RESTART_DELAY = 1.0  # after a pre-launched enclave died before it was ready
ZYGOTE_START_TIMEOUT = 120.0  # its imports and measurement, on a loaded node


@dataclass
class _Ready:
    pid: int
    channel: socket.socket


class EnclavePool:
    """Keeps ``size`` pre-launched enclaves and hands each connection on ``path`` to one of them.

    The enclaves are forks of one zygote (``python -m sealpod.enclave --zygote``, :mod:`sealpod.enclave.prelaunch`),
    which imports and measures the enclave program once: a replacement is ready in milliseconds, and the forks share
    the program's pages. The pool asks the zygote for a fork over their control channel, with the new enclave's end
    of a fresh channel attached; the fork says ``{"ready": PID}`` on it."""

    def __init__(self, path: Path, size: int = 2, log: Callable[[str], None] | None = None) -> None:
        if size < 1:
            raise SealpodError(f"an enclave pool of {size} enclaves", hint="use --size 1 or more")
        self.path, self.size = path, size
        self._log = log or (lambda line: print(f"sealpod enclave-pool: {line}", file=sys.stderr))
        self._ready: queue.Queue[_Ready] = queue.Queue()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._starting: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._zygote: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None

    def serve_forever(self) -> None:
        """Listen, fill the pool, and hand over connections until :meth:`stop`."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        old_umask = os.umask(0o177)
        try:
            listener.bind(str(self.path))
        finally:
            os.umask(old_umask)
        listener.listen(64)
        self._listener = listener
        try:
            with self._lock:
                self._start_zygote()
            for _ in range(self.size):
                self._launch()
            self._log(f"listening on {self.path} with {self.size} pre-launched enclaves")
            while not self._stopping.is_set():
                try:
                    connection, _ = listener.accept()
                except OSError:
                    if self._stopping.is_set():
                        break
                    raise
                with connection:
                    self._hand_over(connection)
        finally:
            self._shutdown()

    def stop(self) -> None:
        """End :meth:`serve_forever` (from a signal handler or another thread)."""
        self._stopping.set()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)

    def _start_zygote(self) -> None:
        """Start the zygote and wait for its ready message (call with the lock held)."""
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with child:
            process = subprocess.Popen(
                enclave_program("--zygote", str(child.fileno())),
                pass_fds=(child.fileno(),),
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        try:
            parent.settimeout(ZYGOTE_START_TIMEOUT)
            message, _ = receive_message(parent)
            if expect_int(message, "ready") != process.pid:
                raise ChannelError(f"ready message from pid {message['ready']}, not {process.pid}")
            parent.settimeout(None)
        except (ChannelError, OSError) as err:
            parent.close()
            process.kill()
            raise SealpodError(
                f"the enclave zygote (pid {process.pid}) did not start: {err} (exit {process.wait()})",
                hint="its own error is above; `python -m sealpod.enclave` must run with this interpreter",
            ) from None
        self._zygote, self._control = process, parent

    def _launch(self) -> None:
        """Have the zygote fork one more pre-launched enclave (a new zygote when the old one is gone)."""
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with child, self._lock:
            if self._stopping.is_set():
                parent.close()
                return
            control, zygote = self._control, self._zygote
            assert control is not None
            assert zygote is not None
            try:
                send_message(control, {"fork": True}, [child.fileno()])
            except OSError as err:
                self._log(f"the enclave zygote (pid {zygote.pid}) is gone ({err}); starting another")
                control.close()
                zygote.wait()
                self._start_zygote()
                assert self._control is not None
                send_message(self._control, {"fork": True}, [child.fileno()])
            self._starting.add(parent)
        threading.Thread(target=self._await_ready, args=(parent,), daemon=True).start()

    def _await_ready(self, channel: socket.socket) -> None:
        try:
            message, _ = receive_message(channel)
            pid = expect_int(message, "ready")
        except (ChannelError, OSError) as err:
            channel.close()
            with self._lock:
                self._starting.discard(channel)
            if not self._stopping.is_set():
                self._log(f"a pre-launched enclave ended before it was ready ({err})")
                time.sleep(RESTART_DELAY)
                self._launch()
            return
        with self._lock:
            self._starting.discard(channel)
        self._ready.put(_Ready(pid, channel))

    def _hand_over(self, connection: socket.socket) -> None:
        while not self._stopping.is_set():
            try:
                ready = self._ready.get(timeout=1.0)
            except queue.Empty:
                continue
            try:
                send_message(ready.channel, {"connection": True}, [connection.fileno()])
            except OSError as err:
                self._log(f"pre-launched enclave {ready.pid} is gone ({err}); trying the next")
                ready.channel.close()
                self._launch()
                continue
            ready.channel.close()
            self._log(f"handed a connection to pre-launched enclave {ready.pid}")
            self._launch()
            return

    def _shutdown(self) -> None:
        """Close every channel: a waiting enclave ends, one still warming up ends at its ready message, and the
        zygote ends (it is killed if it does not within seconds)."""
        if self._listener is not None:
            self._listener.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._stopping.set()
        while True:
            try:
                self._ready.get_nowait().channel.close()
            except queue.Empty:
                break
        with self._lock:
            for channel in self._starting:
                channel.close()
            self._starting.clear()
            if self._control is not None:
                self._control.close()
            zygote = self._zygote
        if zygote is not None:
            try:
                zygote.wait(timeout=10)
            except subprocess.TimeoutExpired:
                zygote.kill()
                zygote.wait()
