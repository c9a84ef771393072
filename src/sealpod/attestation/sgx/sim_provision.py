"""The simulated SGX platform's provisioning: the key hierarchy that Intel and a platform's manufacturing would make.

On first use it makes, in ``<state>/sim-sgx``: a sim root CA, a PCK processor CA and a PCK leaf carrying the SGX
extension, an attestation (quoting) key, a TCB signing key, and a platform secret for sealing. Two sides read it:
the attester (:mod:`sealpod.tee.sim`: quotes and sealing keys) and the simulated Intel PCS
(:mod:`sealpod.attestation.sgx.sim_pcs`: the trusted root and the collateral). This module imports neither the
verifier nor the collateral, so an enclave that attests does not load them.

Sim mode gives the whole flow and isolation from other tenants, NOT secrecy from the host's root: every key here is
a file on the host.
"""

from __future__ import annotations

import datetime
import fcntl
import functools
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from sealpod.config import state_dir
from sealpod.errors import AttestationError

if TYPE_CHECKING:
    from cryptography import x509

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
KEYS = ("root", "pck_ca", "pck", "tcb_signing", "attestation")


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
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sealpod simulated SGX (no hardware)"),
        ]
    )


def raw_signature(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


@dataclass
class PlatformFiles:
    """What the platform's directory holds (its certificates as their PEM files: the enclave's attester only copies
    them into its quotes, and parsing them would import cryptography's x509, ~9 ms of a fresh enclave's start)."""

    directory: Path
    keys: dict[str, ec.EllipticCurvePrivateKey]
    cert_pems: dict[str, bytes]
    platform_secret: bytes
    ppid: bytes
    tcb_status: str = "UpToDate"

    @functools.cached_property
    def certs(self) -> dict[str, x509.Certificate]:
        """The certificates, parsed (the simulated PCS's and the verifier's side)."""
        from cryptography import x509

        return {name: x509.load_pem_x509_certificate(pem) for name, pem in self.cert_pems.items()}


def provision(directory: Path) -> None:
    """Make the platform's key hierarchy in ``directory`` (which must be new): what Intel and the platform's
    manufacturing would, as files."""
    from cryptography import x509  # here: an enclave reads a platform, only provisioning makes certificates

    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)
    later = now + datetime.timedelta(days=3650)
    keys = {name: ec.generate_private_key(ec.SECP256R1()) for name in KEYS}
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


def read_platform(directory: Path) -> PlatformFiles:
    """The keys, certificates, secret and settings of the platform in ``directory``."""
    try:
        keys = {}
        for name in KEYS:
            key = serialization.load_pem_private_key((directory / f"{name}.key").read_bytes(), None)
            assert isinstance(key, ec.EllipticCurvePrivateKey)
            keys[name] = key
        names = ("root", "pck_ca", "pck", "tcb_signing")
        cert_pems = {name: (directory / f"{name}.pem").read_bytes() for name in names}
        if not all(pem.startswith(b"-----BEGIN CERTIFICATE-----") for pem in cert_pems.values()):
            raise ValueError("a certificate file is not a PEM certificate")
        meta = json.loads((directory / "platform.json").read_text())
        return PlatformFiles(
            directory,
            keys,
            cert_pems,
            (directory / "platform-secret").read_bytes(),
            bytes.fromhex(meta["ppid"]),
            meta.get("tcb_status", "UpToDate"),
        )
    except (OSError, ValueError, KeyError, AssertionError) as err:
        raise AttestationError(
            f"the simulated SGX platform in {directory} is damaged: {err}",
            hint=f"remove {directory} to make a new one",
        ) from None


def load_platform(directory: Path | None = None) -> PlatformFiles:
    """The platform in ``directory`` (default ``<state>/sim-sgx``), provisioned on first use."""
    directory = directory or state_dir() / "sim-sgx"
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(directory / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (directory / "platform.json").exists():
            provision(directory)
        return read_platform(directory)


def set_tcb_status(directory: Path, status: str) -> None:
    """Record the TCB status the platform's collateral gives."""
    meta = json.loads((directory / "platform.json").read_text())
    meta["tcb_status"] = status
    (directory / "platform.json").write_text(json.dumps(meta))
