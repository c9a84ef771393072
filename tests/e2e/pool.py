"""A running ``sealpod node enclave-pool`` for the end-to-end tests."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

SEALPOD = str(Path(sys.executable).with_name("sealpod"))


class Pool:
    """A running ``sealpod node enclave-pool`` and its log."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.socket = Path(env["SEALPOD_STATE_DIR"]) / "enclave-pool.sock"
        self.log = log
        self._log_file = log.open("wb")
        self.process = subprocess.Popen(
            [SEALPOD, "node", "enclave-pool", "--size", "1"], env=env, stderr=self._log_file
        )
        deadline = time.monotonic() + 60
        while "listening on" not in log.read_text():
            assert self.process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)

    def handed_over(self) -> list[int]:
        """Pids of the enclaves the pool handed a connection to, in order."""
        return [
            int(pid) for pid in re.findall(r"handed a connection to pre-launched enclave (\d+)", self.log.read_text())
        ]

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=30)
        self._log_file.close()
