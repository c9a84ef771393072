"""DCAP verification collateral: TCB info, QE identity, CRLs and their issuer chains.

Loads dcap-qvl's ``QuoteCollateralV3`` JSON and raw PCS/PCCS responses. The signed JSON bodies are kept as the
exact bytes that were served (the signature covers them; re-serialising would break it).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from sealpod._internal.jsonio import load_object
from sealpod.attestation.sgx.certificates import load_certificates
from sealpod.errors import CollateralError

MAX_COLLATERAL_BYTES = 2 * 1024 * 1024


def _pem_chain(text: str | bytes, what: str) -> tuple[x509.Certificate, ...]:
    return load_certificates(text.encode() if isinstance(text, str) else text, what, CollateralError)


def _hex(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise CollateralError(f"{what} must be a hex string")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise CollateralError(f"{what} is not hex") from None


def top_level_raw(document: bytes, what: str) -> dict[str, bytes]:
    """The exact bytes of each top-level member's value of a JSON object (for signed sub-objects)."""
    text = document.decode("utf-8")
    decoder = json.JSONDecoder()
    pos = text.index("{") + 1 if "{" in text else -1
    if pos < 0:
        raise CollateralError(f"{what} is not a JSON object")
    out: dict[str, bytes] = {}
    try:
        while True:
            while text[pos] in " \t\r\n,":
                pos += 1
            if text[pos] == "}":
                return out
            key, pos = decoder.raw_decode(text, pos)
            while text[pos] in " \t\r\n":
                pos += 1
            if text[pos] != ":":
                raise CollateralError(f"{what}: expected ':' at {pos}")
            pos += 1
            while text[pos] in " \t\r\n":
                pos += 1
            _, end = decoder.raw_decode(text, pos)
            out[str(key)] = text[pos:end].encode()
            pos = end
    except (IndexError, json.JSONDecodeError) as err:
        raise CollateralError(f"{what} is not valid JSON: {err}") from None


@dataclass(frozen=True)
class Collateral:
    """One FMSPC's and PCK CA's collateral set."""

    pck_crl_issuer_chain: tuple[x509.Certificate, ...]
    root_ca_crl: bytes
    pck_crl: bytes
    tcb_info_issuer_chain: tuple[x509.Certificate, ...]
    tcb_info: bytes
    tcb_info_signature: bytes
    qe_identity_issuer_chain: tuple[x509.Certificate, ...]
    qe_identity: bytes
    qe_identity_signature: bytes

    @functools.cached_property
    def cache_key(self) -> tuple[bytes, ...]:
        """What identifies this collateral (its bytes; computed once per instance, which is immutable)."""
        return (
            self.root_ca_crl,
            self.pck_crl,
            self.tcb_info,
            self.tcb_info_signature,
            self.qe_identity,
            self.qe_identity_signature,
            *(c.tbs_certificate_bytes for c in self.tcb_info_issuer_chain),
            *(c.tbs_certificate_bytes for c in self.pck_crl_issuer_chain),
            *(c.tbs_certificate_bytes for c in self.qe_identity_issuer_chain),
        )

    @classmethod
    def from_qvl_json(cls, raw: bytes | str) -> Collateral:
        """Parse dcap-qvl's ``QuoteCollateralV3`` JSON."""
        data = load_object(
            raw.encode() if isinstance(raw, str) else raw, "collateral", MAX_COLLATERAL_BYTES, CollateralError
        )
        keys = (
            "pck_crl_issuer_chain",
            "root_ca_crl",
            "pck_crl",
            "tcb_info_issuer_chain",
            "tcb_info",
            "tcb_info_signature",
            "qe_identity_issuer_chain",
            "qe_identity",
            "qe_identity_signature",
        )
        missing = [k for k in keys if not isinstance(data.get(k), str)]
        if missing:
            raise CollateralError(f"collateral lacks {missing[0]!r} (a string)")
        return cls(
            pck_crl_issuer_chain=_pem_chain(data["pck_crl_issuer_chain"], "pck_crl_issuer_chain"),
            root_ca_crl=_hex(data["root_ca_crl"], "root_ca_crl"),
            pck_crl=_hex(data["pck_crl"], "pck_crl"),
            tcb_info_issuer_chain=_pem_chain(data["tcb_info_issuer_chain"], "tcb_info_issuer_chain"),
            tcb_info=data["tcb_info"].encode(),
            tcb_info_signature=_hex(data["tcb_info_signature"], "tcb_info_signature"),
            qe_identity_issuer_chain=_pem_chain(data["qe_identity_issuer_chain"], "qe_identity_issuer_chain"),
            qe_identity=data["qe_identity"].encode(),
            qe_identity_signature=_hex(data["qe_identity_signature"], "qe_identity_signature"),
        )

    def to_qvl_json(self) -> str:
        """The ``QuoteCollateralV3`` JSON form (what ``--collateral`` reads)."""

        def pem(chain: tuple[x509.Certificate, ...]) -> str:
            return "".join(c.public_bytes(Encoding.PEM).decode() for c in chain)

        return json.dumps(
            {
                "pck_crl_issuer_chain": pem(self.pck_crl_issuer_chain),
                "root_ca_crl": self.root_ca_crl.hex(),
                "pck_crl": self.pck_crl.hex(),
                "tcb_info_issuer_chain": pem(self.tcb_info_issuer_chain),
                "tcb_info": self.tcb_info.decode(),
                "tcb_info_signature": self.tcb_info_signature.hex(),
                "qe_identity_issuer_chain": pem(self.qe_identity_issuer_chain),
                "qe_identity": self.qe_identity.decode(),
                "qe_identity_signature": self.qe_identity_signature.hex(),
            }
        )

    @classmethod
    def from_pcs(
        cls,
        *,
        tcb_info_response: bytes,
        tcb_info_issuer_chain: bytes,
        qe_identity_response: bytes,
        qe_identity_issuer_chain: bytes,
        pck_crl: bytes,
        pck_crl_issuer_chain: bytes,
        root_ca_crl: bytes,
    ) -> Collateral:
        """Assemble collateral from PCS/PCCS v4 responses (bodies as served, issuer chains as PEM, CRLs as DER)."""
        tcb = top_level_raw(tcb_info_response, "TCB info response")
        qe = top_level_raw(qe_identity_response, "QE identity response")
        if "tcbInfo" not in tcb or "signature" not in tcb:
            raise CollateralError("TCB info response lacks 'tcbInfo' or 'signature'")
        if "enclaveIdentity" not in qe or "signature" not in qe:
            raise CollateralError("QE identity response lacks 'enclaveIdentity' or 'signature'")
        return cls(
            pck_crl_issuer_chain=_pem_chain(pck_crl_issuer_chain, "PCK CRL issuer chain"),
            root_ca_crl=der_crl(root_ca_crl),
            pck_crl=der_crl(pck_crl),
            tcb_info_issuer_chain=_pem_chain(tcb_info_issuer_chain, "TCB info issuer chain"),
            tcb_info=tcb["tcbInfo"],
            tcb_info_signature=_hex(json.loads(tcb["signature"]), "TCB info signature"),
            qe_identity_issuer_chain=_pem_chain(qe_identity_issuer_chain, "QE identity issuer chain"),
            qe_identity=qe["enclaveIdentity"],
            qe_identity_signature=_hex(json.loads(qe["signature"]), "QE identity signature"),
        )


def der_crl(data: bytes) -> bytes:
    """A CRL given as DER, PEM or hex, as DER."""
    if data.lstrip().startswith(b"-----BEGIN"):
        try:
            return x509.load_pem_x509_crl(data).public_bytes(Encoding.DER)
        except ValueError as err:
            raise CollateralError(f"CRL is not valid PEM: {err}") from None
    if not data.startswith(b"\x30"):
        try:
            return bytes.fromhex(data.decode())
        except (ValueError, UnicodeDecodeError):
            raise CollateralError("CRL is neither DER, PEM nor hex") from None
    return data
