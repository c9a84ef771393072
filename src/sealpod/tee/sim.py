"""The simulated SGX platform: real-format DCAP quote v3 and Intel-format collateral from its own key hierarchy.

On first use it makes, in ``<state>/sim-sgx``: a sim root CA, a PCK processor CA and a PCK leaf carrying the SGX
extension, an attestation (quoting) key, a TCB signing key, and a platform secret for sealing. The one DCAP verifier
checks its quotes exactly like Intel's when the sim root is trusted, and names it as untrusted otherwise.

Sim mode gives the whole flow and isolation from other tenants, NOT secrecy from the host's root: every key here is
a file on the host.
"""

from __future__ import annotations

import datetime
import fcntl
import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from sealpod.attestation.sgx.collateral import Collateral
from sealpod.attestation.sgx.quote import INTEL_QE_VENDOR_ID, REPORT_SIZE
from sealpod.attestation.sgx.verify import STATUSES, TrustedRoot
from sealpod.config import state_dir
from sealpod.errors import AttestationError

SIM_FMSPC = bytes.fromhex("5EA1D0000000")
SIM_PCEID = bytes.fromhex("0000")
SIM_TCB = (7, 7, 2, 2, 255, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
SIM_PCESVN = 13
SIM_QE_MRSIGNER = hashlib.sha256(b"sealpod simulated quoting enclave").digest()
SIM_QE_MRENCLAVE = hashlib.sha256(b"sealpod simulated quoting enclave code").digest()
SIM_QE_SVN = 8
SIM_ADVISORY = "SEALPOD-SIM-0001"
ATTR_INIT_MODE64 = 0x5
ATTR_DEBUG = 0x2
COLLATERAL_DAYS = 30
_OID = "1.2.840.113741.1.13.1"
_KEYS = ("root", "pck_ca", "pck", "tcb_signing", "attestation")


def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _tlv(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + _der_len(len(value)) + value


def _oid(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    body = bytes([parts[0] * 40 + parts[1]])
    for part in parts[2:]:
        chunk = [part & 0x7F]
        part >>= 7
        while part:
            chunk.append(0x80 | (part & 0x7F))
            part >>= 7
        body += bytes(reversed(chunk))
    return _tlv(0x06, body)


def _int(value: int) -> bytes:
    body = value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big")
    return _tlv(0x02, body)


def _pair(suffix: str, value: bytes) -> bytes:
    return _tlv(0x30, _oid(f"{_OID}.{suffix}") + value)


def sgx_extension(ppid: bytes, tcb: tuple[int, ...], pcesvn: int, fmspc: bytes, pceid: bytes) -> bytes:
    """The DER of a PCK certificate's SGX extension (the subset a verifier reads)."""
    components = b"".join(_pair(f"2.{i + 1}", _int(svn)) for i, svn in enumerate(tcb))
    tcb_seq = _tlv(0x30, components + _pair("2.17", _int(pcesvn)) + _pair("2.18", _tlv(0x04, bytes(tcb))))
    body = (
        _pair("1", _tlv(0x04, ppid))
        + _tlv(0x30, _oid(f"{_OID}.2") + tcb_seq)
        + _pair("3", _tlv(0x04, pceid))
        + _pair("4", _tlv(0x04, fmspc))
        + _pair("5", _tlv(0x0A, b"\x00"))
    )
    return _tlv(0x30, body)


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sealpod simulated SGX (no hardware)"),
        ]
    )


def _raw_signature(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _signed_response(member: bytes, body: bytes, key: ec.EllipticCurvePrivateKey) -> bytes:
    """A PCS-style ``{"<member>":<body>,"signature":"<hex r||s>"}`` response."""
    return b'{"' + member + b'":' + body + b',"signature":"' + _raw_signature(key, body).hex().encode() + b'"}'


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
) -> bytes:
    """A 384-byte SGX report body."""
    body = bytearray(REPORT_SIZE)
    body[0:16] = cpu_svn
    struct.pack_into("<I", body, 16, misc_select)
    body[48:64] = flags.to_bytes(8, "little") + xfrm.to_bytes(8, "little")
    body[64:96] = mr_enclave
    body[128:160] = mr_signer
    struct.pack_into("<HHH", body, 256, isv_prod_id, isv_svn, 0)
    body[320:384] = report_data.ljust(64, b"\0")
    return bytes(body)


@dataclass
class SimPlatform:
    """The simulated platform's keys and certificates."""

    directory: Path
    keys: dict[str, ec.EllipticCurvePrivateKey]
    certs: dict[str, x509.Certificate]
    platform_secret: bytes
    ppid: bytes
    tcb_status: str = "UpToDate"
    _signed: dict[str, bytes] = field(default_factory=dict)
    _certification: bytes | None = field(default=None, repr=False)

    # -- persistence -------------------------------------------------------------------------------------------

    @classmethod
    def load(cls, directory: Path | None = None) -> SimPlatform:
        """The platform in ``directory`` (default ``<state>/sim-sgx``), created on first use."""
        directory = directory or state_dir() / "sim-sgx"
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(directory / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (directory / "platform.json").exists():
                cls._create(directory)
            return cls._read(directory)

    @classmethod
    def _create(cls, directory: Path) -> None:
        now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)
        later = now + datetime.timedelta(days=3650)
        keys = {name: ec.generate_private_key(ec.SECP256R1()) for name in _KEYS}
        ppid = os.urandom(16)

        def cert(
            name: str,
            cn: str,
            issuer_key: str,
            issuer_cn: str,
            ca: bool,
            extra: x509.UnrecognizedExtension | None = None,
        ) -> x509.Certificate:
            builder = (
                x509.CertificateBuilder()
                .subject_name(_name(cn))
                .issuer_name(_name(issuer_cn))
                .public_key(keys[name].public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now)
                .not_valid_after(later)
                .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            )
            if extra is not None:
                builder = builder.add_extension(extra, critical=False)
            return builder.sign(keys[issuer_key], hashes.SHA256())

        root_cn, ca_cn = "sealpod sim SGX Root CA", "sealpod sim SGX PCK Processor CA"
        extension = x509.UnrecognizedExtension(
            x509.ObjectIdentifier(_OID), sgx_extension(ppid, SIM_TCB, SIM_PCESVN, SIM_FMSPC, SIM_PCEID)
        )
        certs = {
            "root": cert("root", root_cn, "root", root_cn, True),
            "pck_ca": cert("pck_ca", ca_cn, "root", root_cn, True),
            "pck": cert("pck", "sealpod sim SGX PCK Certificate", "pck_ca", ca_cn, False, extension),
            "tcb_signing": cert("tcb_signing", "sealpod sim SGX TCB Signing", "root", root_cn, False),
        }
        for name, key in keys.items():
            path = directory / f"{name}.key"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(
                    key.private_bytes(
                        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                    )
                )
        for name, certificate in certs.items():
            (directory / f"{name}.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        secret = directory / "platform-secret"
        fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(os.urandom(32))
        (directory / "platform.json").write_text(json.dumps({"ppid": ppid.hex(), "tcb_status": "UpToDate"}))

    @classmethod
    def _read(cls, directory: Path) -> SimPlatform:
        try:
            keys = {}
            for name in _KEYS:
                key = serialization.load_pem_private_key((directory / f"{name}.key").read_bytes(), None)
                assert isinstance(key, ec.EllipticCurvePrivateKey)
                keys[name] = key
            certs = {
                name: x509.load_pem_x509_certificate((directory / f"{name}.pem").read_bytes())
                for name in ("root", "pck_ca", "pck", "tcb_signing")
            }
            meta = json.loads((directory / "platform.json").read_text())
            return cls(
                directory,
                keys,
                certs,
                (directory / "platform-secret").read_bytes(),
                bytes.fromhex(meta["ppid"]),
                meta.get("tcb_status", "UpToDate"),
            )
        except (OSError, ValueError, KeyError, AssertionError) as err:
            raise AttestationError(
                f"the simulated SGX platform in {directory} is damaged: {err}",
                hint=f"remove {directory} to make a new one",
            ) from None

    def set_tcb_status(self, status: str) -> None:
        """The TCB status the platform's collateral will give (any of Intel's seven)."""
        if status not in STATUSES:
            raise AttestationError(f"unknown TCB status {status!r}", hint=f"one of {', '.join(STATUSES)}")
        self.tcb_status = status
        meta = json.loads((self.directory / "platform.json").read_text())
        meta["tcb_status"] = status
        (self.directory / "platform.json").write_text(json.dumps(meta))

    # -- evidence ----------------------------------------------------------------------------------------------

    def _qe_certification(self) -> bytes:
        """What follows the ISV signature in every quote: the attestation key, the QE report binding it, the PCK's
        signature over that report, and the certification data. As on hardware, where the QE report is signed when
        the attestation key is certified, it is made once."""
        if self._certification is None:
            numbers = self.keys["attestation"].public_key().public_numbers()
            att_key = numbers.x.to_bytes(32, "big") + numbers.y.to_bytes(32, "big")
            auth = hashlib.sha256(self.platform_secret + b"qe-auth").digest()
            qe_report = report_body(
                report_data=hashlib.sha256(att_key + auth).digest(),
                mr_enclave=SIM_QE_MRENCLAVE,
                mr_signer=SIM_QE_MRSIGNER,
                isv_prod_id=1,
                isv_svn=SIM_QE_SVN,
                flags=0x15,
            )
            chain = b"".join(self.certs[n].public_bytes(serialization.Encoding.PEM) for n in ("pck", "pck_ca", "root"))
            cert_data = struct.pack("<H", len(auth)) + auth + struct.pack("<HI", 5, len(chain)) + chain
            self._certification = att_key + qe_report + _raw_signature(self.keys["pck"], qe_report) + cert_data
        return self._certification

    @property
    def root(self) -> TrustedRoot:
        """The sim root, to trust explicitly (``allow_sim``)."""
        return TrustedRoot("sim", self.certs["root"])

    def quote(
        self,
        *,
        report_data: bytes,
        mr_enclave: bytes,
        mr_signer: bytes,
        isv_prod_id: int = 0,
        isv_svn: int = 0,
        debug: bool = False,
    ) -> bytes:
        """A DCAP quote v3 for an enclave of this identity, over ``report_data``."""
        if len(report_data) > 64 or len(mr_enclave) != 32 or len(mr_signer) != 32:
            raise AttestationError("report_data is at most 64 bytes; mr_enclave and mr_signer are 32")
        header = struct.pack("<HHIHH", 3, 2, 0, SIM_QE_SVN, SIM_PCESVN) + INTEL_QE_VENDOR_ID + bytes(20)
        body = report_body(
            report_data=report_data,
            mr_enclave=mr_enclave,
            mr_signer=mr_signer,
            isv_prod_id=isv_prod_id,
            isv_svn=isv_svn,
            flags=ATTR_INIT_MODE64 | (ATTR_DEBUG if debug else 0),
        )
        signature_data = _raw_signature(self.keys["attestation"], header + body) + self._qe_certification()
        return header + body + struct.pack("<I", len(signature_data)) + signature_data

    def attester(
        self, *, mr_enclave: bytes | None = None, mr_signer: bytes | None = None, isv_prod_id: int = 0, isv_svn: int = 0
    ) -> SimAttester:
        """An Attester for an enclave of the given identity on this platform."""
        return SimAttester(self, mr_enclave or bytes(32), mr_signer or bytes(32), isv_prod_id, isv_svn)

    # -- collateral --------------------------------------------------------------------------------------------

    def _crl(self, issuer: str, key: str, now: datetime.datetime) -> bytes:
        crl = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.certs[issuer].subject)
            .last_update(now - datetime.timedelta(hours=1))
            .next_update(now + datetime.timedelta(days=COLLATERAL_DAYS))
            .sign(self.keys[key], hashes.SHA256())
        )
        return crl.public_bytes(serialization.Encoding.DER)

    def pcs_documents(self, now: datetime.datetime | None = None) -> dict[str, bytes]:
        """The collateral as a PCS/PCCS v4 serves it: response bodies, issuer chains (PEM) and CRLs (DER)."""
        now = now or datetime.datetime.now(datetime.UTC)
        issue = (now - datetime.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        until = (now + datetime.timedelta(days=COLLATERAL_DAYS)).strftime("%Y-%m-%dT%H:%M:%SZ")
        advisories = [] if self.tcb_status == "UpToDate" else [SIM_ADVISORY]
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
                    "tcbStatus": self.tcb_status,
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
        signer = self.keys["tcb_signing"]
        pem = serialization.Encoding.PEM
        signing_chain = self.certs["tcb_signing"].public_bytes(pem) + self.certs["root"].public_bytes(pem)
        return {
            "tcb_info_response": b'{"tcbInfo":'
            + tcb_raw
            + b',"signature":"'
            + _raw_signature(signer, tcb_raw).hex().encode()
            + b'"}',
            "tcb_info_issuer_chain": signing_chain,
            "qe_identity_response": b'{"enclaveIdentity":'
            + qe_raw
            + b',"signature":"'
            + _raw_signature(signer, qe_raw).hex().encode()
            + b'"}',
            "qe_identity_issuer_chain": signing_chain,
            "pck_crl": self._crl("pck_ca", "pck_ca", now),
            "pck_crl_issuer_chain": self.certs["pck_ca"].public_bytes(pem) + self.certs["root"].public_bytes(pem),
            "root_ca_crl": self._crl("root", "root", now),
        }

    def collateral(self, now: datetime.datetime | None = None) -> Collateral:
        """The platform's collateral, valid for 30 days from ``now``."""
        return Collateral.from_pcs(**self.pcs_documents(now))

    def sealing_key(self, mr_enclave: bytes, mr_signer: bytes, *, policy: str = "mrenclave") -> bytes:
        """A key only this platform and this enclave identity derive (SGX EGETKEY semantics, simulated)."""
        identity = mr_enclave if policy == "mrenclave" else mr_signer
        return hashlib.sha256(
            b"sealpod-sim-seal\0" + policy.encode() + b"\0" + self.platform_secret + identity
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

    def evidence(self, report_data: bytes) -> bytes:
        return self.platform.quote(
            report_data=report_data,
            mr_enclave=self.mr_enclave,
            mr_signer=self.mr_signer,
            isv_prod_id=self.isv_prod_id,
            isv_svn=self.isv_svn,
            debug=self.debug,
        )
