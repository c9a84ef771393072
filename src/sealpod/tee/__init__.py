"""The evidence side: an Attester per TEE (real SGX through Gramine or Occlum, and the simulated SGX platform)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from sealpod.errors import AttestationError


class Attester(Protocol):
    """Produces evidence (a quote) binding 64 bytes of report data to the running enclave."""

    tee: str

    def evidence(self, report_data: bytes) -> bytes:
        """A quote over ``report_data`` (at most 64 bytes; zero-padded)."""
        ...


def detect(*, allow_sim: bool = False, dev: Path = Path("/dev")) -> Attester:
    """Real SGX when present (Gramine's /dev/attestation, else Occlum's /dev/sgx), else the simulator if allowed."""
    from sealpod.tee import sgx

    if (dev / "attestation" / "quote").exists():
        return sgx.GramineAttester(dev / "attestation")
    if (dev / "sgx").exists():
        return sgx.OcclumAttester(dev / "sgx")
    if allow_sim:
        from sealpod.tee.sim import SimPlatform

        return SimPlatform.load().attester()
    raise AttestationError(
        "no SGX device here (/dev/attestation or /dev/sgx)",
        hint="run inside Gramine or Occlum on SGX hardware, or allow the simulated platform (no secrecy from the host)",
    )
