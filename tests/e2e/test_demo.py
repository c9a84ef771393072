"""`sealpod demo`, the README's main job: the whole flow runs, the workload's own output appears, the two refusals
happen for the stated reasons, and everything the demo started is stopped."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SEALPOD = str(Path(sys.executable).with_name("sealpod"))


def test_demo_runs_the_whole_flow_and_shows_the_refusals(tmp_path: Path) -> None:
    demo_dir = tmp_path / "demo"
    proc = subprocess.run(
        [SEALPOD, "demo", "--workdir", str(demo_dir)], capture_output=True, text=True, check=False, timeout=300
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    # the workload's own output: the image's Env, user, workdir, and the decrypted file
    assert "hello from inside the enclave" in proc.stdout
    assert "I am uid 1000, pid 1, on host demo, in /app" in proc.stdout
    assert "secret: the plaintext of this file only ever exists inside the enclave" in proc.stdout
    # the refusals, each naming the check that failed
    assert "hello:unsigned has no sigstoreSigned signatures" in output
    assert "PolicyDeny" in output
    assert output.count("secret: the plaintext") == 2, "twice (cold and warm start); the refused runs printed nothing"
    assert "reopened the sealed rootfs" in output
    assert "gocryptfs ciphertext" in output
    # the registry only ever held ciphertext layers of the secret file
    secret = b"the plaintext of this file only ever exists inside the enclave"
    for path in (demo_dir / "registry").rglob("*"):
        if path.is_file():
            assert secret not in path.read_bytes(), path
    for started in (demo_dir / "registry", demo_dir / "kbs"):
        leftover = subprocess.run(["pgrep", "-f", str(started)], capture_output=True, check=False)
        assert leftover.returncode == 1, f"the demo left {started} running"
