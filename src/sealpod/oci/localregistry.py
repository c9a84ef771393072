"""A throwaway local ``docker-registry`` (the distribution project's server) on 127.0.0.1.

Used by the demo when the registry is installed, and by tests and benchmarks. Storage lives in a directory the
caller owns; :meth:`LocalRegistry.stop` ends the process.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from sealpod._internal.http_client import HttpClient, TransportError
from sealpod._internal.net import free_port
from sealpod._internal.processes import stop_process
from sealpod.errors import SealpodError

BINARY = "docker-registry"


def available() -> bool:
    """Whether the registry binary is installed."""
    return shutil.which(BINARY) is not None


class LocalRegistry:
    """A registry process on 127.0.0.1: plain HTTP, or HTTPS with ``tls=(cert, key)``; anonymous, htpasswd (bcrypt)
    auth, or any other ``auth:`` section given as indented YAML (token auth, for instance)."""

    def __init__(
        self,
        storage: Path,
        *,
        htpasswd: Path | None = None,
        auth_yaml: str | None = None,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        self.storage = storage
        self.tls = tls
        self.htpasswd = htpasswd
        self.auth_yaml = auth_yaml
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``."""
        return f"127.0.0.1:{self.port}"

    def _config(self) -> str:
        tls = f"  tls:\n    certificate: {self.tls[0]}\n    key: {self.tls[1]}\n" if self.tls else ""
        auth = f"auth:\n{self.auth_yaml}" if self.auth_yaml else ""
        if self.htpasswd:
            auth = f"auth:\n  htpasswd:\n    realm: sealpod-test\n    path: {self.htpasswd}\n"
        return (
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.storage / 'data'}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n{tls}{auth}"
        )

    def start(self, timeout: float = 20.0) -> LocalRegistry:
        """Start the process and wait until ``/v2/`` answers."""
        binary = shutil.which(BINARY)
        if binary is None:
            raise SealpodError(f"{BINARY} is not installed", hint="apt-get install docker-registry")
        self.storage.mkdir(parents=True, exist_ok=True)
        config = self.storage / "config.yml"
        config.write_text(self._config())
        log = (self.storage / "registry.log").open("wb")
        self.process = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SealpodError(
                    f"{BINARY} exited with {self.process.returncode}: "
                    f"{(self.storage / 'registry.log').read_text(errors='replace')[-500:]}"
                )
            try:
                scheme = "https" if self.tls else "http"
                with HttpClient(timeout=1.0, verify=False, trust_env=False) as http:  # readiness only
                    http.get(f"{scheme}://{self.host}/v2/")
                return self
            except TransportError:
                time.sleep(0.05)
        self.stop()
        raise SealpodError(f"{BINARY} did not answer on {self.host} within {timeout} s")

    def stop(self) -> None:
        """Stop the process."""
        stop_process(self.process)
        self.process = None

    def __enter__(self) -> LocalRegistry:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
