"""A KBS in a child process on 127.0.0.1, for the demo and local trials: SQLite storage, admin API without auth,
the simulated SGX root trusted (it proves nothing about hardware)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from sealpod._internal.http_client import HttpClient, TransportError
from sealpod._internal.net import free_port
from sealpod._internal.processes import stop_process
from sealpod.errors import SealpodError


class EmbeddedKbs:
    """``python -m sealpod kbs serve`` with a generated config in ``directory``; stop it with :meth:`stop`."""

    def __init__(self, directory: Path, sim_dir: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = directory / "kbs.toml"
        self.log = directory / "kbs.log"
        directory.mkdir(parents=True, exist_ok=True)
        self.config.write_text(
            f'storage = "sqlite://{directory / "kbs.sqlite"}"\n'
            "[http]\ninsecure_http = true\n"
            "[admin]\ninsecure = true\n"
            f'[attestation]\nallow_sim = true\nsim_dir = "{sim_dir}"\n'
            f'signing_key = "{directory / "token-key.pem"}"\n'
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> EmbeddedKbs:
        """Start the server and wait until it answers."""
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "sealpod",
                    "kbs",
                    "serve",
                    "--config",
                    str(self.config),
                    "--listen",
                    f"127.0.0.1:{self.port}",
                    "--workers",
                    "1",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SealpodError(f"the KBS exited at start: {self.log.read_text()[-1000:]}")
            try:
                with HttpClient(timeout=1.0, verify=False, trust_env=False) as http:  # readiness only
                    if http.get(f"{self.url}/healthz").status_code == 200:
                        return self
            except TransportError:
                time.sleep(0.05)
        self.stop()
        raise SealpodError(f"the KBS did not answer within {timeout} s (log: {self.log})")

    def stop(self) -> None:
        """Stop the server."""
        stop_process(self.process)
