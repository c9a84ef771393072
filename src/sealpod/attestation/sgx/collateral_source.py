"""Where the collateral for a quote comes from: the one choice the attestation service, the KBS and the CLI share.

In order: the simulated platform's (only when the sim root is trusted and the quote's FMSPC is the simulator's), a
fixed collateral given by the caller (``sealpod attest verify --collateral``), a directory of dcap-qvl
``QuoteCollateralV3`` files named ``<FMSPC>_<ca>.json``, and an Intel PCS or a PCCS.
"""

from __future__ import annotations

import functools
import threading
import time
from pathlib import Path
from typing import Any

from cryptography import x509

from sealpod.attestation.sgx.collateral import Collateral
from sealpod.attestation.sgx.pck import parse_pck_extension
from sealpod.attestation.sgx.pcs import issuing_ca_type
from sealpod.attestation.sgx.quote import Quote
from sealpod.errors import AttestationError

#: How long the simulated platform's collateral is reused before it is made again (it is valid for 30 days).
SIM_COLLATERAL_REUSE = 3600.0


class CollateralSource:
    """Collateral for a quote's (FMSPC, PCK CA type); call it, or :meth:`for_quote`."""

    def __init__(
        self,
        *,
        sim_dir: Path | None = None,
        allow_sim: bool = False,
        fixed: Collateral | None = None,
        directory: Path | None = None,
        pccs_url: str | None = None,
        pcs_cache: Path | None = None,
    ) -> None:
        self.sim_dir = sim_dir
        self.allow_sim = allow_sim
        self.fixed = fixed
        self.directory = directory
        self.pccs_url = pccs_url
        self.pcs_cache = pcs_cache
        self._sim: tuple[float, Collateral] | None = None
        self._pcs: Any = None
        self._lock = threading.Lock()

    def __call__(self, fmspc: bytes, ca: str) -> Collateral:
        from sealpod.attestation.sgx.sim_provision import SIM_FMSPC

        if self.allow_sim and fmspc == SIM_FMSPC:
            return self._sim_collateral()
        if self.fixed is not None:
            return self.fixed
        if self.directory is not None:
            path = self.directory / f"{fmspc.hex().upper()}_{ca}.json"
            if path.exists():
                return Collateral.from_qvl_json(path.read_bytes())
        if self.pccs_url:
            collateral: Collateral = self._pcs_client().collateral(fmspc, ca)
            return collateral
        raise AttestationError(
            f"no collateral for FMSPC {fmspc.hex().upper()} ({ca} CA)",
            hint="configure attestation.pccs_url or attestation.collateral_dir",
        )

    def for_quote(self, quote: Quote) -> Collateral:
        """The collateral for ``quote`` (picked by its PCK certificate's FMSPC and issuing CA)."""
        if self.fixed is not None and not self.allow_sim:
            return self.fixed  # nothing to pick: the verifier, not this, reads the quote's certificates
        return self(*selector_for_chain(quote.certification_data))

    def close(self) -> None:
        """Close the PCS client, if one was opened."""
        if self._pcs is not None:
            self._pcs.close()
            self._pcs = None

    def _sim_collateral(self) -> Collateral:
        with self._lock:
            if self._sim is None or time.time() - self._sim[0] > SIM_COLLATERAL_REUSE:
                from sealpod.attestation.sgx.sim_pcs import SimPcs

                self._sim = (time.time(), SimPcs.load(self.sim_dir).collateral())
            return self._sim[1]

    def _pcs_client(self) -> Any:
        with self._lock:
            if self._pcs is None:
                from sealpod.attestation.sgx.pcs import PcsClient
                from sealpod.config import state_dir

                self._pcs = PcsClient(str(self.pccs_url), self.pcs_cache or state_dir() / "pcs-cache")
            return self._pcs


@functools.lru_cache(maxsize=256)
def selector_for_chain(certification_data: bytes) -> tuple[bytes, str]:
    """The FMSPC and the PCK CA type that pick a quote's collateral, parsed once per PCK chain (a platform's quotes
    carry the same one)."""
    leaf = x509.load_pem_x509_certificates(certification_data.rstrip(b"\0"))[0]
    return parse_pck_extension(leaf).fmspc, issuing_ca_type(leaf)
