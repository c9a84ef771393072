"""The SGX extension of a PCK certificate (OID 1.2.840.113741.1.13.1), read with a small bounded DER walk."""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509

from sealpod.errors import QuoteFormatError

SGX_EXTENSION_OID = x509.ObjectIdentifier("1.2.840.113741.1.13.1")
_PREFIX = "1.2.840.113741.1.13.1"


def _tlv(data: bytes, pos: int) -> tuple[int, bytes, int]:
    if pos + 2 > len(data):
        raise QuoteFormatError("PCK SGX extension: truncated DER")
    tag, length = data[pos], data[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or pos + count > len(data):
            raise QuoteFormatError("PCK SGX extension: bad DER length")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    if pos + length > len(data):
        raise QuoteFormatError("PCK SGX extension: DER value runs past its container")
    return tag, data[pos : pos + length], pos + length


def _children(data: bytes) -> list[tuple[int, bytes]]:
    out, pos = [], 0
    while pos < len(data):
        tag, value, pos = _tlv(data, pos)
        out.append((tag, value))
    return out


def _oid(value: bytes) -> str:
    if not value:
        raise QuoteFormatError("PCK SGX extension: empty OID")
    parts = [value[0] // 40, value[0] % 40]
    current = 0
    for byte in value[1:]:
        current = (current << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(current)
            current = 0
    return ".".join(map(str, parts))


def _pairs(data: bytes) -> dict[str, tuple[int, bytes]]:
    out = {}
    for tag, value in _children(data):
        if tag != 0x30:
            raise QuoteFormatError("PCK SGX extension: expected a SEQUENCE of {OID, value}")
        items = _children(value)
        if len(items) != 2 or items[0][0] != 0x06:
            raise QuoteFormatError("PCK SGX extension: malformed {OID, value} pair")
        out[_oid(items[0][1])] = items[1]
    return out


@dataclass(frozen=True, slots=True)
class PckExtension:
    """What the PCK certificate says about the platform."""

    ppid: bytes
    tcb_components: tuple[int, ...]
    pcesvn: int
    cpusvn: bytes
    pceid: bytes
    fmspc: bytes
    sgx_type: int


def parse_pck_extension(cert: x509.Certificate) -> PckExtension:
    """Read the SGX extension of a PCK leaf certificate."""
    try:
        extension = cert.extensions.get_extension_for_oid(SGX_EXTENSION_OID)
    except x509.ExtensionNotFound:
        raise QuoteFormatError("the PCK certificate has no SGX extension (1.2.840.113741.1.13.1)") from None
    raw = extension.value.public_bytes() if hasattr(extension.value, "public_bytes") else b""
    tag, body, _ = _tlv(raw, 0)
    if tag != 0x30:
        raise QuoteFormatError("PCK SGX extension is not a SEQUENCE")
    top = _pairs(body)
    try:
        tcb = _pairs(top[f"{_PREFIX}.2"][1])
        components = tuple(int.from_bytes(tcb[f"{_PREFIX}.2.{i}"][1], "big") for i in range(1, 17))
        return PckExtension(
            ppid=top[f"{_PREFIX}.1"][1],
            tcb_components=components,
            pcesvn=int.from_bytes(tcb[f"{_PREFIX}.2.17"][1], "big"),
            cpusvn=tcb[f"{_PREFIX}.2.18"][1],
            pceid=top[f"{_PREFIX}.3"][1],
            fmspc=top[f"{_PREFIX}.4"][1],
            sgx_type=int.from_bytes(top[f"{_PREFIX}.5"][1], "big"),
        )
    except KeyError as err:
        raise QuoteFormatError(f"PCK SGX extension lacks {err.args[0]}") from None
