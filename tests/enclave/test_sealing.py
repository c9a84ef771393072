"""Sealed blobs open only for the same enclave identity, platform, purpose and label, and unaltered."""

from __future__ import annotations

from pathlib import Path

import pytest

from sealpod.enclave.sealing import seal, sealing_key, unseal
from sealpod.errors import SealpodError
from sealpod.tee.sim import SimPlatform


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> SimPlatform:
    return SimPlatform.load(tmp_path_factory.mktemp("sim"))


def test_the_same_enclave_opens_what_it_sealed(platform: SimPlatform) -> None:
    key = sealing_key(platform.attester(mr_enclave=b"\x01" * 32, mr_signer=b"\x02" * 32))
    blob = seal(key, "gocryptfs-key", "img", b"secret")
    again = sealing_key(platform.attester(mr_enclave=b"\x01" * 32, mr_signer=b"\x02" * 32))
    assert unseal(again, "gocryptfs-key", "img", blob) == b"secret"
    assert b"secret" not in blob


def test_another_enclave_build_or_platform_cannot_open_it(platform: SimPlatform, tmp_path: Path) -> None:
    key = sealing_key(platform.attester(mr_enclave=b"\x01" * 32))
    blob = seal(key, "gocryptfs-key", "img", b"secret")
    other_build = sealing_key(platform.attester(mr_enclave=b"\x03" * 32))
    with pytest.raises(SealpodError, match="does not open"):
        unseal(other_build, "gocryptfs-key", "img", blob)
    other_platform = sealing_key(SimPlatform.load(tmp_path / "other").attester(mr_enclave=b"\x01" * 32))
    with pytest.raises(SealpodError, match="does not open"):
        unseal(other_platform, "gocryptfs-key", "img", blob)


def test_another_label_a_changed_byte_or_garbage_is_refused(platform: SimPlatform) -> None:
    key = sealing_key(platform.attester(mr_enclave=b"\x01" * 32))
    blob = seal(key, "gocryptfs-key", "img", b"secret")
    with pytest.raises(SealpodError, match="does not open"):
        unseal(key, "gocryptfs-key", "other-img", blob)
    with pytest.raises(SealpodError, match="does not open"):
        unseal(key, "gocryptfs-key", "img", blob[:-1] + bytes([blob[-1] ^ 1]))
    with pytest.raises(SealpodError, match="malformed"):
        unseal(key, "gocryptfs-key", "img", b"not sealed")
