"""SGX DCAP quotes v3 (and v4 with certification data type 6) parsed into typed fields.

Every size is checked before it is used; a refusal names the field and its byte offset. Layout: Intel's
``sgx_quote_3.h`` / ``sgx_quote_4.h``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from sealpod.errors import QuoteFormatError

HEADER_SIZE = 48
REPORT_SIZE = 384
SIGNED_SIZE = HEADER_SIZE + REPORT_SIZE
MAX_QUOTE_SIZE = 64 * 1024
ATT_KEY_ECDSA_P256 = 2
TEE_SGX = 0
INTEL_QE_VENDOR_ID = bytes.fromhex("939A7233F79C4CA9940A0DB3957F0607")
CERT_PCK_CHAIN = 5
CERT_QE_REPORT = 6
FLAG_DEBUG = 0x2


class _Reader:
    def __init__(self, data: bytes, base: int = 0) -> None:
        self.data, self.pos, self.base = data, 0, base

    def take(self, size: int, field: str) -> bytes:
        if size < 0 or self.pos + size > len(self.data):
            raise QuoteFormatError(
                f"quote truncated at {field} (offset {self.base + self.pos}): needs {size} bytes, "
                f"{len(self.data) - self.pos} left"
            )
        out = self.data[self.pos : self.pos + size]
        self.pos += size
        return out

    def u16(self, field: str) -> int:
        return int(struct.unpack("<H", self.take(2, field))[0])

    def u32(self, field: str) -> int:
        return int(struct.unpack("<I", self.take(4, field))[0])

    def offset(self) -> int:
        return self.base + self.pos


@dataclass(frozen=True, slots=True)
class Header:
    """The 48-byte quote header."""

    version: int
    att_key_type: int
    tee_type: int
    qe_svn: int
    pce_svn: int
    qe_vendor_id: bytes
    user_data: bytes
    raw: bytes


@dataclass(frozen=True, slots=True)
class ReportBody:
    """An SGX report body (the ISV enclave's or the quoting enclave's), 384 bytes."""

    cpu_svn: bytes
    misc_select: int
    isv_ext_prod_id: bytes
    attributes: bytes
    mr_enclave: bytes
    mr_signer: bytes
    config_id: bytes
    isv_prod_id: int
    isv_svn: int
    config_svn: int
    isv_family_id: bytes
    report_data: bytes
    raw: bytes

    @property
    def flags(self) -> int:
        """The attribute flags (INIT, DEBUG, MODE64, ...)."""
        return int.from_bytes(self.attributes[:8], "little")

    @property
    def xfrm(self) -> int:
        """The attribute XFRM."""
        return int.from_bytes(self.attributes[8:], "little")

    @property
    def debug(self) -> bool:
        """Whether the enclave was built debuggable (its memory is readable by the host)."""
        return bool(self.flags & FLAG_DEBUG)


def parse_report(raw: bytes, base: int = 0) -> ReportBody:
    """Parse a 384-byte report body."""
    if len(raw) != REPORT_SIZE:
        raise QuoteFormatError(f"report body at offset {base} is {len(raw)} bytes, not {REPORT_SIZE}")
    misc, prod, svn, config_svn = struct.unpack_from("<I", raw, 16)[0], *struct.unpack_from("<HHH", raw, 256)
    return ReportBody(
        cpu_svn=raw[0:16],
        misc_select=misc,
        isv_ext_prod_id=raw[32:48],
        attributes=raw[48:64],
        mr_enclave=raw[64:96],
        mr_signer=raw[128:160],
        config_id=raw[192:256],
        isv_prod_id=prod,
        isv_svn=svn,
        config_svn=config_svn,
        isv_family_id=raw[304:320],
        report_data=raw[320:384],
        raw=raw,
    )


@dataclass(frozen=True, slots=True)
class Quote:
    """A parsed quote; ``signed`` is what the ISV signature covers (header and report body)."""

    header: Header
    report: ReportBody
    isv_signature: bytes
    attestation_key: bytes
    qe_report: ReportBody
    qe_report_signature: bytes
    qe_auth_data: bytes
    certification_type: int
    certification_data: bytes
    raw: bytes

    @property
    def signed(self) -> bytes:
        """Bytes [0:432]."""
        return self.raw[:SIGNED_SIZE]


def _header(reader: _Reader) -> Header:
    raw = reader.take(HEADER_SIZE, "header")
    version, key_type, tee, qe_svn, pce_svn = struct.unpack_from("<HHIHH", raw, 0)
    return Header(version, key_type, tee, qe_svn, pce_svn, raw[12:28], raw[28:48], raw)


def _qe_block(reader: _Reader) -> tuple[ReportBody, bytes, bytes, int, bytes]:
    report_offset = reader.offset()
    qe_report = parse_report(reader.take(REPORT_SIZE, "qe_report"), report_offset)
    qe_signature = reader.take(64, "qe_report_signature")
    auth_size = reader.u16("qe_auth_data.size")
    auth = reader.take(auth_size, "qe_auth_data")
    cert_type = reader.u16("certification_data.type")
    cert_size = reader.u32("certification_data.size")
    cert = reader.take(cert_size, "certification_data")
    return qe_report, qe_signature, auth, cert_type, cert


def parse_quote(raw: bytes) -> Quote:
    """Parse a quote; only the layout is checked here, not the signatures."""
    if len(raw) > MAX_QUOTE_SIZE:
        raise QuoteFormatError(f"quote is {len(raw)} bytes, over the {MAX_QUOTE_SIZE}-byte bound")
    reader = _Reader(raw)
    header = _header(reader)
    if header.version not in (3, 4):
        raise QuoteFormatError(f"unsupported quote version {header.version} at offset 0 (3 and 4 are)")
    if header.att_key_type != ATT_KEY_ECDSA_P256:
        raise QuoteFormatError(f"attestation key type {header.att_key_type} at offset 2 is not ECDSA-P256 (2)")
    if header.tee_type != TEE_SGX:
        raise QuoteFormatError(f"TEE type {header.tee_type:#x} at offset 4 is not SGX (0)")
    report = parse_report(reader.take(REPORT_SIZE, "isv_report"), HEADER_SIZE)
    signature_size = reader.u32("signature_data.size")
    if reader.pos + signature_size != len(raw):
        raise QuoteFormatError(
            f"signature_data.size {signature_size} at offset {SIGNED_SIZE} does not match the "
            f"{len(raw) - SIGNED_SIZE - 4} bytes that follow it"
        )
    isv_signature = reader.take(64, "isv_signature")
    attestation_key = reader.take(64, "attestation_key")
    if header.version == 3:
        qe_report, qe_signature, auth, cert_type, cert = _qe_block(reader)
    else:
        outer_type = reader.u16("certification_data.type")
        if outer_type != CERT_QE_REPORT:
            raise QuoteFormatError(f"quote v4 certification data type {outer_type} is not 6 (QE report)")
        outer_size = reader.u32("certification_data.size")
        outer_base = reader.offset()
        inner = _Reader(reader.take(outer_size, "certification_data"), outer_base)
        qe_report, qe_signature, auth, cert_type, cert = _qe_block(inner)
        if inner.pos != len(inner.data):
            raise QuoteFormatError(
                f"quote v4 QE report certification data has {len(inner.data) - inner.pos} "
                f"trailing bytes at offset {inner.offset()}"
            )
    if cert_type != CERT_PCK_CHAIN:
        raise QuoteFormatError(f"certification data type {cert_type} is not 5 (PCK certificate chain)")
    if reader.pos != len(raw):
        raise QuoteFormatError(f"{len(raw) - reader.pos} trailing bytes after the quote at offset {reader.pos}")
    return Quote(header, report, isv_signature, attestation_key, qe_report, qe_signature, auth, cert_type, cert, raw)
