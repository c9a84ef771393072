"""``sealpod enclave manifest --gramine``: a Gramine manifest template that measures the enclave's code, attests with
DCAP, keeps the rootfs on a mount sealed to MRENCLAVE, and is not a debug enclave."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import sealpod

SEALPOD = str(Path(sys.executable).with_name("sealpod"))


def test_the_manifest_measures_the_code_and_seals_the_rootfs(tmp_path: Path) -> None:
    out = tmp_path / "sealpod.manifest.template"
    proc = subprocess.run(
        [SEALPOD, "enclave", "manifest", "--gramine", "--out", str(out), "--state", "/srv/sealpod"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    manifest = tomllib.loads(out.read_text())
    sgx = manifest["sgx"]
    assert sgx["remote_attestation"] == "dcap"
    assert sgx["debug"] is False
    package = str(Path(sealpod.__file__).parent)
    mounted = [m["path"] for m in manifest["fs"]["mounts"]]
    # every directory the enclave's code comes from is mounted and measured
    assert any(package.startswith(path) for path in mounted)
    assert any(package.startswith(uri.removeprefix("file:").rstrip("/")) for uri in sgx["trusted_files"])
    assert f"file:{Path(sys.executable).resolve()}" in sgx["trusted_files"]
    (rootfs,) = [m for m in manifest["fs"]["mounts"] if m.get("type") == "encrypted"]
    assert rootfs["path"] == "/srv/sealpod/rootfs"
    assert rootfs["key_name"] == "_sgx_mrenclave"
    assert manifest["loader"]["env"]["SEALPOD_STATE_DIR"] == "/srv/sealpod"


def test_manifest_needs_an_enclave_runtime() -> None:
    proc = subprocess.run([SEALPOD, "enclave", "manifest"], capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert "--gramine" in proc.stderr
