"""`sealpod demo`, the README's main job, runs end to end and shows the unpacked image."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SEALPOD = str(Path(sys.executable).with_name("sealpod"))


def test_demo_runs_the_flow_and_cleans_up_its_registry(tmp_path: Path) -> None:
    proc = subprocess.run(
        [SEALPOD, "demo", "--workdir", str(tmp_path / "demo")], capture_output=True, text=True, check=False, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "pushed docker://127.0.0.1:" in proc.stdout
    assert "app/hello.sh" in proc.stdout
    rootfs = tmp_path / "demo" / "rootfs"
    assert (rootfs / "app/hello.sh").read_text().startswith("#!/bin/sh")
    assert not (rootfs / "app/OLD-NOTE.txt").exists(), "the third layer's whiteout was applied"
    assert (rootfs / "app/hello.sh").stat().st_mode & 0o111
    leftover = subprocess.run(["pgrep", "-f", str(tmp_path / "demo" / "registry")], capture_output=True, check=False)
    assert leftover.returncode == 1, "the demo's registry must be stopped"
