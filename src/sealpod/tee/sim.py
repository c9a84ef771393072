"""The simulated SGX platform's attester: real-format DCAP quote v3 from the platform's own key hierarchy
(:mod:`sealpod.attestation.sgx.sim_provision`), and sealing keys derived from its platform secret.

Its Intel side (the root to trust, the collateral) is :mod:`sealpod.attestation.sgx.sim_pcs`; the one DCAP verifier
checks these quotes exactly like Intel's when the sim root is trusted, and names it as untrusted otherwise. Sim mode
gives the whole flow and isolation from other tenants, NOT secrecy from the host's root: every key here is a file on
the host.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field
from pathlib import Path

from sealpod.attestation.sgx.quote import INTEL_QE_VENDOR_ID, REPORT_SIZE
from sealpod.attestation.sgx.sim_provision import (
    ATTR_DEBUG,
    ATTR_INIT_MODE64,
    SIM_FMSPC,
    SIM_PCESVN,
    SIM_QE_MRENCLAVE,
    SIM_QE_MRSIGNER,
    SIM_QE_SVN,
    SIM_TCB,
    PlatformFiles,
    load_platform,
    raw_signature,
)
from sealpod.errors import AttestationError

__all__ = ["SIM_FMSPC", "SimAttester", "SimPlatform", "report_body"]


def report_body(
    *,
    report_data: bytes,
    mr_enclave: bytes,
    mr_signer: bytes,
    isv_prod_id: int,
    isv_svn: int,
    flags: int = ATTR_INIT_MODE64,
    xfrm: int = 0xE7,
    cpu_svn: bytes = bytes(SIM_TCB),
    misc_select: int = 0,
    config_id: bytes = bytes(64),
) -> bytes:
    """A 384-byte SGX report body."""
    body = bytearray(REPORT_SIZE)
    body[0:16] = cpu_svn
    struct.pack_into("<I", body, 16, misc_select)
    body[48:64] = flags.to_bytes(8, "little") + xfrm.to_bytes(8, "little")
    body[64:96] = mr_enclave
    body[128:160] = mr_signer
    body[192:256] = config_id.ljust(64, b"\0")[:64]
    struct.pack_into("<HHH", body, 256, isv_prod_id, isv_svn, 0)
    body[320:384] = report_data.ljust(64, b"\0")
    return bytes(body)


@dataclass
class SimPlatform:
    """The simulated platform as its enclaves see it: quotes and sealing keys."""

    files: PlatformFiles
    _certification: bytes | None = field(default=None, repr=False)

    @classmethod
    def load(cls, directory: Path | None = None) -> SimPlatform:
        """The platform in ``directory`` (default ``<state>/sim-sgx``), provisioned on first use."""
        return cls(load_platform(directory))

    @property
    def directory(self) -> Path:
        """Where the platform's files are."""
        return self.files.directory

    def _qe_certification(self) -> bytes:
        """What follows the ISV signature in every quote: the attestation key, the QE report binding it, the PCK's
        signature over that report, and the certification data. As on hardware, where the QE report is signed when
        the attestation key is certified, it is made once."""
        if self._certification is None:
            numbers = self.files.keys["attestation"].public_key().public_numbers()
            att_key = numbers.x.to_bytes(32, "big") + numbers.y.to_bytes(32, "big")
            auth = hashlib.sha256(self.files.platform_secret + b"qe-auth").digest()
            qe_report = report_body(
                report_data=hashlib.sha256(att_key + auth).digest(),
                mr_enclave=SIM_QE_MRENCLAVE,
                mr_signer=SIM_QE_MRSIGNER,
                isv_prod_id=1,
                isv_svn=SIM_QE_SVN,
                flags=0x15,
            )
            chain = b"".join(self.files.cert_pems[n] for n in ("pck", "pck_ca", "root"))
            cert_data = struct.pack("<H", len(auth)) + auth + struct.pack("<HI", 5, len(chain)) + chain
            self._certification = att_key + qe_report + raw_signature(self.files.keys["pck"], qe_report) + cert_data
        return self._certification

    def quote(
        self,
        *,
        report_data: bytes,
        mr_enclave: bytes,
        mr_signer: bytes,
        isv_prod_id: int = 0,
        isv_svn: int = 0,
        debug: bool = False,
        config_id: bytes = bytes(64),
    ) -> bytes:
        """A DCAP quote v3 for an enclave of this identity and CONFIGID, over ``report_data``."""
        if len(report_data) > 64 or len(mr_enclave) != 32 or len(mr_signer) != 32 or len(config_id) > 64:
            raise AttestationError("report_data and config_id are at most 64 bytes; mr_enclave and mr_signer are 32")
        header = struct.pack("<HHIHH", 3, 2, 0, SIM_QE_SVN, SIM_PCESVN) + INTEL_QE_VENDOR_ID + bytes(20)
        body = report_body(
            report_data=report_data,
            mr_enclave=mr_enclave,
            mr_signer=mr_signer,
            isv_prod_id=isv_prod_id,
            isv_svn=isv_svn,
            flags=ATTR_INIT_MODE64 | (ATTR_DEBUG if debug else 0),
            config_id=config_id,
        )
        signature_data = raw_signature(self.files.keys["attestation"], header + body) + self._qe_certification()
        return header + body + struct.pack("<I", len(signature_data)) + signature_data

    def attester(
        self,
        *,
        mr_enclave: bytes | None = None,
        mr_signer: bytes | None = None,
        isv_prod_id: int = 0,
        isv_svn: int = 0,
        config_id: bytes = bytes(64),
    ) -> SimAttester:
        """An Attester for an enclave of the given identity on this platform, launched with ``config_id`` (SGX's
        CONFIGID, fixed at launch: an init-data digest)."""
        return SimAttester(
            self, mr_enclave or bytes(32), mr_signer or bytes(32), isv_prod_id, isv_svn, config_id=config_id
        )

    def sealing_key(self, mr_enclave: bytes, mr_signer: bytes, *, policy: str = "mrenclave") -> bytes:
        """A key only this platform and this enclave identity derive (SGX EGETKEY semantics, simulated)."""
        identity = mr_enclave if policy == "mrenclave" else mr_signer
        return hashlib.sha256(
            b"sealpod-sim-seal\0" + policy.encode() + b"\0" + self.files.platform_secret + identity
        ).digest()


@dataclass
class SimAttester:
    """The Attester of an enclave identity on the simulated platform."""

    platform: SimPlatform
    mr_enclave: bytes
    mr_signer: bytes
    isv_prod_id: int = 0
    isv_svn: int = 0
    debug: bool = False
    tee: str = "sgx"
    config_id: bytes = bytes(64)

    def evidence(self, report_data: bytes) -> bytes:
        return self.platform.quote(
            report_data=report_data,
            mr_enclave=self.mr_enclave,
            mr_signer=self.mr_signer,
            isv_prod_id=self.isv_prod_id,
            isv_svn=self.isv_svn,
            debug=self.debug,
            config_id=self.config_id,
        )
