"""Real `sealpod kbs serve` processes on 127.0.0.1 with their own config, store and simulated platform."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sealpod._internal.net import free_port
from sealpod.tee.sim import SimPlatform

SEALPOD = str(Path(sys.executable).with_name("sealpod"))
MRE, MRS = bytes.fromhex("ab" * 32), bytes.fromhex("cd" * 32)


class KbsProcess:
    """One server process."""

    def __init__(self, base: Path, config: str, name: str = "kbs", workers: int = 1) -> None:
        self.workers = workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = base / f"{name}.toml"
        self.config.write_text(config)
        self.log = base / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> KbsProcess:
        log = self.log.open("ab")
        self.process = subprocess.Popen(
            [SEALPOD, "kbs", "serve", "--config", str(self.config), "--listen", f"127.0.0.1:{self.port}"]
            + (["--workers", str(self.workers)] if self.workers != 1 else []),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"kbs serve exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.05)
        pytest.fail(f"kbs serve did not come up: {self.log.read_text()[-2000:]}")

    def kill(self, sig: str = "term") -> None:
        if self.process and self.process.poll() is None:
            if sig == "kill":
                self.process.kill()
            else:
                self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture
def kbs_factory(tmp_path: Path) -> Iterator[Callable[..., KbsProcess]]:
    """Start KBS processes; every one is stopped at the end of the test."""
    started: list[KbsProcess] = []

    def make(
        *,
        storage: str | None = None,
        allow_sim: bool = True,
        allow_sample: bool = False,
        admin: str = "insecure",
        admin_key: Path | None = None,
        session_lifetime: int = 300,
        name: str = "kbs",
        start: bool = True,
        extra: str = "",
        workers: int = 1,
    ) -> KbsProcess:
        admin_section = (
            "insecure = true"
            if admin == "insecure"
            else (f'insecure = false\npublic_keys = ["{admin_key}"]\nroles = {{ admin = [".*"], reader = ["^GET "] }}')
        )
        config = (
            f'storage = "{storage or "sqlite://" + str(tmp_path / "kbs.sqlite")}"\n'
            f"[http]\ninsecure_http = true\n"
            f"[admin]\n{admin_section}\n"
            f'[attestation]\nallow_sim = {str(allow_sim).lower()}\nsim_dir = "{tmp_path / "sim"}"\n'
            f"allow_sample = {str(allow_sample).lower()}\nsession_lifetime = {session_lifetime}\n"
            f'signing_key = "{tmp_path / "token-key.pem"}"\n{extra}'
        )
        server = KbsProcess(tmp_path, config, name, workers)
        started.append(server)
        return server.start() if start else server

    yield make
    for server in started:
        server.kill()


@pytest.fixture
def sim(tmp_path: Path) -> SimPlatform:
    return SimPlatform.load(tmp_path / "sim")


def register_enclave(url: str, mr_enclave: bytes = MRE, mr_signer: bytes = MRS, prod: int = 0, svn: int = 0) -> None:
    from sealpod.kbs.client.admin import AdminClient

    with AdminClient(url) as admin:
        admin.set_reference(
            {"mr_enclave": [mr_enclave.hex()], "mr_signer": [mr_signer.hex()], "isv_prod_id": [prod], "isv_svn": [svn]}
        )


def error_of(response: httpx.Response) -> tuple[int, str, str]:
    body: dict[str, Any] = response.json()
    return response.status_code, body["type"].rsplit("/", 1)[-1], body["detail"]
