"""The bounds a user sets on an unpack (``sealpod pull --max-size/--max-entries``, the run policy's ``max_size`` and
``max_entries``), and runs of zeros written as holes: an 8 MB gzip layer of zeros no longer fills 4 GiB of disk."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sealpod.agent.run_policy import RunPolicy, RunPolicyError
from sealpod.oci.platform import parse_platform
from sealpod.oci.pull import pull
from sealpod.oci.source import LayoutStore
from tests.helpers import E, image_from_tars, make_tar

SEALPOD = str(Path(sys.executable).with_name("sealpod"))
MIB = 1024 * 1024


def test_runs_of_zeros_become_holes_and_the_content_is_exact(tmp_path: Path) -> None:
    content = b"head" + bytes(64 * MIB) + b"tail" + bytes(3 * MIB)  # ends in zeros: the size must still be right
    image_from_tars(tmp_path / "layout", "z", [make_tar([E("zeros", data=content), E("small", data=bytes(100))])])
    pull(LayoutStore(str(tmp_path / "layout"), "z"), tmp_path / "rootfs", parse_platform("linux/amd64"))
    written = tmp_path / "rootfs" / "zeros"
    assert written.stat().st_size == len(content)
    assert written.read_bytes() == content
    assert written.stat().st_blocks * 512 < 4 * MIB  # 67 MiB of content, almost all of it holes
    assert (tmp_path / "rootfs" / "small").read_bytes() == bytes(100)


def _pull(tmp_path: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    rootfs = tmp_path / f"rootfs{len(list(tmp_path.glob('rootfs*')))}"
    return subprocess.run(
        [SEALPOD, "pull", f"oci:{tmp_path / 'layout'}:b", "--rootfs", str(rootfs), "--insecure-policy", *flags],
        capture_output=True,
        text=True,
        check=False,
    )


def test_pull_takes_the_bounds_a_user_sets(tmp_path: Path) -> None:
    entries = [E("a", data=bytes(2 * MIB)), E("b", data=b"1"), E("c", data=b"2")]
    image_from_tars(tmp_path / "layout", "b", [make_tar(entries)])
    assert _pull(tmp_path).returncode == 0
    too_big = _pull(tmp_path, "--max-size", "1m")
    assert too_big.returncode != 0
    assert f"{MIB}-byte bound" in too_big.stderr
    too_many = _pull(tmp_path, "--max-entries", "2")
    assert too_many.returncode != 0
    assert "more than 2 entries" in too_many.stderr
    assert not any(path.exists() and any(path.iterdir()) for path in tmp_path.glob("rootfs[12]"))
    bad = _pull(tmp_path, "--max-entries", "0")
    assert bad.returncode != 0
    assert "must be positive" in bad.stderr


def test_the_run_policy_bounds_the_enclave_s_unpack() -> None:
    policy = RunPolicy.parse(b'{"max_size": 1048576, "max_entries": 10}', "p")
    assert (policy.unpack_limits().max_total_bytes, policy.unpack_limits().max_entries) == (MIB, 10)
    assert RunPolicy().unpack_limits().max_entries == 1_000_000
    for raw in (b'{"max_size": 0}', b'{"max_entries": "10"}', b'{"max_size": true}'):
        with pytest.raises(RunPolicyError, match="must be a positive integer"):
            RunPolicy.parse(raw, "p")
