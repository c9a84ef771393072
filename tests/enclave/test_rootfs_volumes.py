"""The gocryptfs rootfs: a volume per running enclave of an image (two pods of one image never share a mount), the
key sealed so that the next enclave of the image reopens a free volume, and nothing readable in the cipher dir."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import file_contains

# run in a fresh interpreter: a fork of the test process (which may hold gRPC and other threads) can deadlock
_VOLUMES = """
import json, sys
from pathlib import Path
from sealpod.enclave.rootfs import GocryptfsRootfs, private_mount_namespace

base = Path(sys.argv[1])
root = bytes(range(32))
private_mount_namespace()
first = GocryptfsRootfs("r/app:v1", root, base=base)
second = GocryptfsRootfs("r/app:v1", root, base=base)
try:
    first.rootfs.mkdir()
    (first.rootfs / "secret.txt").write_text("volume-canary-2b91")
    second.rootfs.mkdir()
    report = {"first": str(first.directory), "second": str(second.directory)}
    report["shared"] = (second.rootfs / "secret.txt").exists()
finally:
    first.close()
    second.close()
again = GocryptfsRootfs("r/app:v1", root, base=base)  # both free: the first volume, reopened
try:
    report["reopened"] = str(again.directory)
    report["content"] = (again.rootfs / "secret.txt").read_text()
finally:
    again.close()
print(json.dumps(report))
"""


@pytest.mark.skipif(not Path("/usr/bin/gocryptfs").exists(), reason="gocryptfs is not installed")
def test_two_enclaves_of_one_image_get_separate_volumes_and_a_free_one_is_reopened(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _VOLUMES, str(tmp_path)], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["first"] != report["second"]
    assert not report["shared"]
    assert report["reopened"] == report["first"]
    assert report["content"] == "volume-canary-2b91"
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert not file_contains(path, b"volume-canary-2b91")


def test_the_canary_scan_finds_a_needle_in_a_sparse_file_across_chunks(tmp_path: Path) -> None:
    sparse = tmp_path / "image"
    with sparse.open("wb") as handle:
        handle.truncate(8 * 1024**3)
        handle.seek(5 * 1024**3 + (1 << 20) - 4)  # straddles the scan's 1 MiB chunk boundary
        handle.write(b"volume-canary-2b91")
    assert file_contains(sparse, b"volume-canary-2b91")
    assert not file_contains(sparse, b"volume-canary-xxxx")
