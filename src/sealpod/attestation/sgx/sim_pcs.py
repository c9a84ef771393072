"""The simulated Intel side of the simulated SGX platform: its root CA (to trust explicitly) and its collateral as
Intel's PCS/PCCS v4 serves it (TCB info and QE identity signed by the sim TCB signing key, CRLs)."""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from sealpod.attestation.sgx.collateral import Collateral
from sealpod.attestation.sgx.sim_provision import (
    COLLATERAL_DAYS,
    SIM_ADVISORY,
    SIM_FMSPC,
    SIM_PCEID,
    SIM_PCESVN,
    SIM_QE_MRSIGNER,
    SIM_QE_SVN,
    SIM_TCB,
    PlatformFiles,
    load_platform,
    raw_signature,
    set_tcb_status,
)
from sealpod.attestation.sgx.verify import STATUSES, TrustedRoot
from sealpod.errors import AttestationError


@dataclass
class SimPcs:
    """The simulated platform's Intel side: root, TCB status and collateral."""

    files: PlatformFiles

    @classmethod
    def load(cls, directory: Path | None = None) -> SimPcs:
        """The Intel side of the platform in ``directory`` (default ``<state>/sim-sgx``), provisioned on first use."""
        return cls(load_platform(directory))

    @property
    def root(self) -> TrustedRoot:
        """The sim root, to trust explicitly (``allow_sim``)."""
        return TrustedRoot("sim", self.files.certs["root"])

    @property
    def tcb_status(self) -> str:
        """The TCB status the collateral gives."""
        return self.files.tcb_status

    def set_tcb_status(self, status: str) -> None:
        """The TCB status the platform's collateral will give (any of Intel's seven)."""
        if status not in STATUSES:
            raise AttestationError(f"unknown TCB status {status!r}", hint=f"one of {', '.join(STATUSES)}")
        set_tcb_status(self.files.directory, status)
        self.files.tcb_status = status

    def pcs_documents(self, now: datetime.datetime | None = None) -> dict[str, bytes]:
        """The collateral as a PCS/PCCS v4 serves it: response bodies, issuer chains (PEM) and CRLs (DER)."""
        now = now or datetime.datetime.now(datetime.UTC)
        issue = (now - datetime.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        until = (now + datetime.timedelta(days=COLLATERAL_DAYS)).strftime("%Y-%m-%dT%H:%M:%SZ")
        advisories = [] if self.files.tcb_status == "UpToDate" else [SIM_ADVISORY]
        tcb_info = {
            "id": "SGX",
            "version": 3,
            "issueDate": issue,
            "nextUpdate": until,
            "fmspc": SIM_FMSPC.hex().upper(),
            "pceId": SIM_PCEID.hex().upper(),
            "tcbType": 0,
            "tcbEvaluationDataNumber": 1,
            "tcbLevels": [
                {
                    "tcb": {"sgxtcbcomponents": [{"svn": s} for s in SIM_TCB], "pcesvn": SIM_PCESVN},
                    "tcbDate": "2026-01-01T00:00:00Z",
                    "tcbStatus": self.files.tcb_status,
                    "advisoryIDs": advisories,
                }
            ],
        }
        qe_identity = {
            "id": "QE",
            "version": 2,
            "issueDate": issue,
            "nextUpdate": until,
            "tcbEvaluationDataNumber": 1,
            "miscselect": "00000000",
            "miscselectMask": "FFFFFFFF",
            "attributes": "11000000000000000000000000000000",
            "attributesMask": "FBFFFFFFFFFFFFFF0000000000000000",
            "mrsigner": SIM_QE_MRSIGNER.hex().upper(),
            "isvprodid": 1,
            "tcbLevels": [{"tcb": {"isvsvn": SIM_QE_SVN}, "tcbDate": "2026-01-01T00:00:00Z", "tcbStatus": "UpToDate"}],
        }
        tcb_raw = json.dumps(tcb_info, separators=(",", ":")).encode()
        qe_raw = json.dumps(qe_identity, separators=(",", ":")).encode()
        signer = self.files.keys["tcb_signing"]
        pem = serialization.Encoding.PEM
        signing_chain = self.files.certs["tcb_signing"].public_bytes(pem) + self.files.certs["root"].public_bytes(pem)
        return {
            "tcb_info_response": b'{"tcbInfo":'
            + tcb_raw
            + b',"signature":"'
            + raw_signature(signer, tcb_raw).hex().encode()
            + b'"}',
            "tcb_info_issuer_chain": signing_chain,
            "qe_identity_response": b'{"enclaveIdentity":'
            + qe_raw
            + b',"signature":"'
            + raw_signature(signer, qe_raw).hex().encode()
            + b'"}',
            "qe_identity_issuer_chain": signing_chain,
            "pck_crl": _crl(self.files, "pck_ca", "pck_ca", now),
            "pck_crl_issuer_chain": self.files.certs["pck_ca"].public_bytes(pem)
            + self.files.certs["root"].public_bytes(pem),
            "root_ca_crl": _crl(self.files, "root", "root", now),
        }

    def collateral(self, now: datetime.datetime | None = None) -> Collateral:
        """The platform's collateral, valid for 30 days from ``now``."""
        return Collateral.from_pcs(**self.pcs_documents(now))


def _crl(files: PlatformFiles, issuer: str, key: str, now: datetime.datetime) -> bytes:
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(files.certs[issuer].subject)
        .last_update(now - datetime.timedelta(hours=1))
        .next_update(now + datetime.timedelta(days=COLLATERAL_DAYS))
        .sign(files.keys[key], hashes.SHA256())
    )
    return crl.public_bytes(serialization.Encoding.DER)
