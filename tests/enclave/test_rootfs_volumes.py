"""The gocryptfs rootfs: a volume per running enclave of an image (two pods of one image never share a mount), the
key sealed so that the next enclave of the image reopens a free volume, and nothing readable in the cipher dir."""

from __future__ import annotations

import json
import subprocess
import sys
import time
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


_OPEN = """
import json, sys
from pathlib import Path
from sealpod.enclave.rootfs import GocryptfsRootfs, private_mount_namespace

base, phase = Path(sys.argv[1]), sys.argv[2]
private_mount_namespace()
volume = GocryptfsRootfs("r/app:v1", bytes(range(32)), base=base)
try:
    if phase in ("fill", "killed"):
        volume.rootfs.mkdir()
        (volume.rootfs / "app.txt").write_text("hello")
        volume.mark_pulled("sha256:" + "ab" * 32)
    if phase == "killed":  # the enclave dies outright, its volume still mounted
        import os, signal
        os.kill(os.getpid(), signal.SIGKILL)
    print(json.dumps({"digest": volume.pulled_digest(), "app": (volume.rootfs / "app.txt").exists()}))
finally:
    volume.close()
"""


def _open_volume(base: Path, phase: str) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, "-c", _OPEN, str(base), phase], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout))


@pytest.mark.skipif(not Path("/usr/bin/gocryptfs").exists(), reason="gocryptfs is not installed")
def test_a_sealed_rootfs_reopens_and_a_tampered_one_is_made_again_empty(tmp_path: Path) -> None:
    filled = _open_volume(tmp_path, "fill")
    assert filled == {"digest": "sha256:" + "ab" * 32, "app": True}
    assert _open_volume(tmp_path, "open") == filled  # the next enclave of the image reopens it: no pull

    (cipher,) = [p for p in tmp_path.rglob("cipher/*") if p.is_file() and p.stat().st_size > 1 << 20]
    with cipher.open("r+b") as handle:  # the host flips one byte of the image's first block (the superblock)
        handle.seek(18 + 1100)
        byte = handle.read(1)
        handle.seek(18 + 1100)
        handle.write(bytes([byte[0] ^ 0x01]))
    # gocryptfs refuses the block, the ext4 image does not mount: it is made again, empty, and the image is pulled
    assert _open_volume(tmp_path, "open") == {"digest": None, "app": False}


@pytest.mark.skipif(not Path("/usr/bin/gocryptfs").exists(), reason="gocryptfs is not installed")
def test_an_enclave_killed_outright_leaves_its_volume_unmounted_and_whole(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _OPEN, str(tmp_path), "killed"], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == -9, proc.stderr
    # the janitor unmounts the image while gocryptfs still serves it, then gocryptfs: nothing of it stays behind
    deadline = time.monotonic() + 30
    while True:
        left = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True, check=False).stdout
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert left == ""
    assert _open_volume(tmp_path, "open") == {"digest": "sha256:" + "ab" * 32, "app": True}
