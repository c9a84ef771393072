"""The gocryptfs rootfs: a volume per running enclave of an image (two pods of one image never share a mount), the
key sealed so that the next enclave of the image reopens a free volume, and nothing readable in the cipher dir."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from sealpod.enclave.rootfs import GocryptfsRootfs, private_mount_namespace
from tests.helpers import file_contains

SEALING_ROOT = bytes(range(32))


def _in_private_namespace(base: str, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    private_mount_namespace()
    first = GocryptfsRootfs("r/app:v1", SEALING_ROOT, base=Path(base))
    second = GocryptfsRootfs("r/app:v1", SEALING_ROOT, base=Path(base))
    try:
        first.rootfs.mkdir()
        (first.rootfs / "secret.txt").write_text("volume-canary-2b91")
        second.rootfs.mkdir()
        queue.put((str(first.directory), str(second.directory), (second.rootfs / "secret.txt").exists()))
    finally:
        first.close()
        second.close()
    again = GocryptfsRootfs("r/app:v1", SEALING_ROOT, base=Path(base))  # both free: the first volume, reopened
    try:
        queue.put((str(again.directory), (again.rootfs / "secret.txt").read_text()))
    finally:
        again.close()


@pytest.mark.skipif(not Path("/usr/bin/gocryptfs").exists(), reason="gocryptfs is not installed")
def test_two_enclaves_of_one_image_get_separate_volumes_and_a_free_one_is_reopened(tmp_path: Path) -> None:
    queue: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    child = multiprocessing.get_context("fork").Process(target=_in_private_namespace, args=(str(tmp_path), queue))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    first, second, shared = queue.get(timeout=5)
    assert first != second
    assert not shared
    reopened, content = queue.get(timeout=5)
    assert reopened == first
    assert content == "volume-canary-2b91"
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
