"""DCAP quote verification in Intel QVL's order, giving dcap-qvl's verdicts (spec: sgx-dcap.md section 2).

The time of check is an argument. Work that does not depend on the quote (collateral signatures, CRLs, issuer chains)
and work that depends only on the PCK chain is cached, keyed by the bytes it was computed from; so is the check of the
QE report's signature, which a platform's quotes all repeat (its quoting enclave certifies one attestation key), keyed
by the PCK chain, the report and the signature. What depends on time (validity windows) is re-evaluated on every
call.
"""

from __future__ import annotations

import functools
import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from sealpod._internal.jsonio import load_object
from sealpod.attestation.sgx.certificates import load_certificates
from sealpod.attestation.sgx.collateral import MAX_COLLATERAL_BYTES, Collateral
from sealpod.attestation.sgx.pck import PckExtension, parse_pck_extension
from sealpod.attestation.sgx.quote import INTEL_QE_VENDOR_ID, Quote, parse_quote
from sealpod.errors import AttestationError, CollateralError, QuoteFormatError

STATUSES = (
    "UpToDate",
    "SWHardeningNeeded",
    "ConfigurationNeeded",
    "ConfigurationAndSWHardeningNeeded",
    "OutOfDate",
    "OutOfDateConfigurationNeeded",
    "Revoked",
)
ADVISORY_RULE = "dcap-qvl: the union of the platform's and the QE's advisory IDs"
_SHA256 = ec.ECDSA(hashes.SHA256())


def intel_root() -> bytes:
    """Intel's SGX Root CA certificate (DER), as shipped."""
    return (resources.files("sealpod.attestation.sgx") / "intel_sgx_root_ca.der").read_bytes()


class QuoteVerificationError(AttestationError):
    """The quote or its collateral failed a check; the message says which."""


@dataclass(frozen=True, slots=True)
class Window:
    """When a verification result holds: the intersection of every validity period involved."""

    not_before: int
    not_after: int
    bounded_by: str
    bounded_by_after: str

    def narrowed(self, start: int, end: int, what_start: str, what_end: str) -> Window:
        nb, nb_by = (start, what_start) if start > self.not_before else (self.not_before, self.bounded_by)
        na, na_by = (end, what_end) if end < self.not_after else (self.not_after, self.bounded_by_after)
        return Window(nb, na, nb_by, na_by)

    def contains(self, now: int) -> bool:
        return self.not_before <= now <= self.not_after


OPEN = Window(0, 2**63, "", "")


def _ts(value: datetime) -> int:
    return int(value.replace(tzinfo=UTC).timestamp() if value.tzinfo is None else value.timestamp())


def _iso(text: Any, what: str) -> int:
    if not isinstance(text, str):
        raise CollateralError(f"{what} is missing")
    try:
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())
    except ValueError:
        raise CollateralError(f"{what} {text!r} is not an ISO 8601 time") from None


@functools.lru_cache(maxsize=64)
def _iso_time(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _cert_window(window: Window, cert: x509.Certificate, what: str) -> Window:
    return window.narrowed(
        _ts(cert.not_valid_before_utc), _ts(cert.not_valid_after_utc), f"{what}.notBefore", f"{what}.notAfter"
    )


def _verify_cert(cert: x509.Certificate, issuer: x509.Certificate, what: str) -> None:
    if cert.issuer != issuer.subject:
        raise QuoteVerificationError(f"{what} was not issued by {issuer.subject.rfc4514_string()}")
    key = issuer.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise QuoteVerificationError(f"{what}'s issuer key is not ECDSA")
    try:
        key.verify(
            cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm or hashes.SHA256())
        )
    except InvalidSignature:
        raise QuoteVerificationError(f"the signature on {what} does not verify") from None


def _raw_sig(key: Any, signature: bytes, data: bytes, what: str) -> None:
    if len(signature) != 64 or not isinstance(key, ec.EllipticCurvePublicKey):
        raise QuoteVerificationError(f"{what}: malformed signature or key")
    der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
    try:
        key.verify(der, data, _SHA256)
    except InvalidSignature:
        raise QuoteVerificationError(f"{what} is invalid") from None


def _cn(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


@dataclass(frozen=True)
class TrustedRoot:
    """A root the verifier trusts, and the name the claims give it (``intel`` or ``sim``)."""

    name: str
    cert: x509.Certificate

    @classmethod
    def from_der(cls, name: str, der: bytes) -> TrustedRoot:
        return cls(name, x509.load_der_x509_certificate(der))


@dataclass(frozen=True)
class _Chain:
    """A verified issuer chain to a trusted root (leaf first)."""

    certs: tuple[x509.Certificate, ...]
    root: TrustedRoot
    window: Window


@dataclass(frozen=True)
class _CheckedCollateral:
    root: TrustedRoot
    tcb_info: dict[str, Any]
    qe_identity: dict[str, Any]
    root_crl: x509.CertificateRevocationList
    pck_crl: x509.CertificateRevocationList
    pck_crl_issuer: x509.Certificate
    window: Window


@dataclass(frozen=True)
class _CheckedPck:
    leaf: x509.Certificate
    intermediate: x509.Certificate
    root: TrustedRoot
    extension: PckExtension
    window: Window


@dataclass(frozen=True)
class _Pairing:
    """What one PCK chain and one checked collateral give together, whatever the quote: checked once per pair."""

    window: Window
    platform_status: str
    platform_advisories: tuple[str, ...]
    tcb_date: str | None


@dataclass(frozen=True)
class SgxVerdict:
    """An accepted quote: what it proves, the TCB appraisal, and how long the appraisal holds."""

    quote: Quote
    pck: PckExtension
    root: str
    status: str
    advisory_ids: tuple[str, ...]
    platform_status: str
    platform_advisory_ids: tuple[str, ...]
    qe_status: str
    qe_advisory_ids: tuple[str, ...]
    tcb_date: str | None
    tcb_evaluation_data_number: int | None
    window: Window
    collateral_expired: bool
    advisory_rule: str = ADVISORY_RULE
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def claims(self) -> dict[str, Any]:
        """Claims in trustee's naming (``input.sgx.*``): raw little-endian fields as hex, flat ``attributes.*``."""
        h, b = self.quote.header.raw, self.quote.report
        return {
            "header": {
                "version": h[0:2].hex(),
                "att_key_type": h[2:4].hex(),
                "att_key_data_0": h[4:8].hex(),
                "qe_svn": h[8:10].hex(),
                "pce_svn": h[10:12].hex(),
                "vendor_id": h[12:28].hex(),
                "user_data": h[28:48].hex(),
            },
            "body": {
                "cpu_svn": b.cpu_svn.hex(),
                "misc_select": b.raw[16:20].hex(),
                "reserved1": b.raw[20:32].hex(),
                "isv_ext_prod_id": b.isv_ext_prod_id.hex(),
                "attributes.flags": b.attributes[:8].hex(),
                "attributes.xfrm": b.attributes[8:].hex(),
                "mr_enclave": b.mr_enclave.hex(),
                "reserved2": b.raw[96:128].hex(),
                "mr_signer": b.mr_signer.hex(),
                "reserved3": b.raw[160:192].hex(),
                "config_id": b.config_id.hex(),
                "isv_prod_id": b.raw[256:258].hex(),
                "isv_svn": b.raw[258:260].hex(),
                "config_svn": b.raw[260:262].hex(),
                "reserved4": b.raw[262:304].hex(),
                "isv_family_id": b.isv_family_id.hex(),
                "report_data": b.report_data.hex(),
            },
            "tcb_date": self.tcb_date,
            "tcb_eval_num": self.tcb_evaluation_data_number,
            "sgx_type": "Scalable" if self.pck.sgx_type == 1 else "Standard",
            "earliest_issue_date": _iso_time(self.window.not_before),
            "earliest_expiration_date": _iso_time(self.window.not_after),
            "tcb_status": self.status,
            "advisory_ids": list(self.advisory_ids),
            "collateral_expiration_status": "1" if self.collateral_expired else "0",
            "root": self.root,
        }


def _crl(der: bytes, what: str) -> x509.CertificateRevocationList:
    try:
        return x509.load_der_x509_crl(der)
    except ValueError as err:
        raise CollateralError(f"{what} is not a DER CRL: {err}") from None


def _json(raw: bytes, what: str) -> dict[str, Any]:
    return load_object(raw, what, MAX_COLLATERAL_BYTES, CollateralError)


class DcapVerifier:
    """Verifies SGX DCAP quotes against collateral and a set of trusted roots."""

    def __init__(self, roots: list[TrustedRoot] | None = None, *, cache_size: int = 64) -> None:
        self.roots = roots if roots is not None else [TrustedRoot.from_der("intel", intel_root())]
        self._cache_size = cache_size
        self._collateral: OrderedDict[tuple[bytes, ...], _CheckedCollateral] = OrderedDict()
        self._pck: OrderedDict[bytes, _CheckedPck] = OrderedDict()
        self._qe_reports: OrderedDict[tuple[bytes, bytes, bytes], bool] = OrderedDict()
        self._pairings: OrderedDict[tuple[Any, ...], _Pairing] = OrderedDict()
        self._qe_statuses: OrderedDict[tuple[Any, ...], tuple[str, list[str]]] = OrderedDict()

    def _remember(self, cache: OrderedDict[Any, Any], key: Any, value: Any) -> None:
        cache[key] = value
        if len(cache) > self._cache_size:
            cache.popitem(last=False)

    def _root_for(self, cert: x509.Certificate, what: str) -> TrustedRoot:
        for root in self.roots:
            if cert == root.cert:
                return root
        raise QuoteVerificationError(
            f"{what} ends in an untrusted root ({cert.subject.rfc4514_string()}, "
            f"SHA-256 {cert.fingerprint(hashes.SHA256()).hex()})",
            hint="sim quotes are trusted only where the sim root is configured (allow_sim)",
        )

    def _chain(self, certs: tuple[x509.Certificate, ...], what: str) -> _Chain:
        if len(certs) < 2:
            raise QuoteVerificationError(f"{what} must hold the signing certificate and the root")
        root = self._root_for(certs[-1], what)
        window = _cert_window(OPEN, certs[-1], f"{what}[root]")
        for index in range(len(certs) - 1):
            _verify_cert(certs[index], certs[index + 1], f"{what}[{index}]")
            window = _cert_window(window, certs[index], f"{what}[{index}]")
        return _Chain(certs, root, window)

    def _check_collateral(self, collateral: Collateral) -> _CheckedCollateral:
        key = collateral.cache_key
        cached = self._collateral.get(key)
        if cached is not None:
            self._collateral.move_to_end(key)
            return cached
        tcb_chain = self._chain(collateral.tcb_info_issuer_chain, "tcb_info_issuer_chain")
        qe_chain = self._chain(collateral.qe_identity_issuer_chain, "qe_identity_issuer_chain")
        crl_chain = self._chain(collateral.pck_crl_issuer_chain, "pck_crl_issuer_chain")
        if not (tcb_chain.root is qe_chain.root is crl_chain.root):
            raise QuoteVerificationError("the collateral's issuer chains end in different roots")
        root = tcb_chain.root
        root_crl = _crl(collateral.root_ca_crl, "root_ca_crl")
        pck_crl = _crl(collateral.pck_crl, "pck_crl")
        if root_crl.issuer != root.cert.subject or not root_crl.is_signature_valid(root.cert.public_key()):  # type: ignore[arg-type]
            raise QuoteVerificationError("the root CA CRL is not signed by the trusted root")
        pck_issuer = collateral.pck_crl_issuer_chain[0]
        if pck_crl.issuer != pck_issuer.subject or not pck_crl.is_signature_valid(pck_issuer.public_key()):  # type: ignore[arg-type]
            raise QuoteVerificationError("the PCK CRL is not signed by its issuer chain's first certificate")
        for chain, what in (
            (tcb_chain, "TCB signing certificate"),
            (qe_chain, "QE identity signing certificate"),
            (crl_chain, "PCK CRL issuer"),
        ):
            for cert in chain.certs[:-1]:
                if root_crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
                    raise QuoteVerificationError(f"the {what} is revoked by the root CA CRL")
        _raw_sig(
            tcb_chain.certs[0].public_key(),
            collateral.tcb_info_signature,
            collateral.tcb_info,
            "the TCB info signature (over the exact served bytes)",
        )
        _raw_sig(
            qe_chain.certs[0].public_key(),
            collateral.qe_identity_signature,
            collateral.qe_identity,
            "the QE identity signature (over the exact served bytes)",
        )
        tcb_info, qe_identity = _json(collateral.tcb_info, "tcb_info"), _json(collateral.qe_identity, "qe_identity")
        if tcb_info.get("version") not in (2, 3) or (tcb_info.get("version") == 3 and tcb_info.get("id") != "SGX"):
            raise QuoteVerificationError(f"tcb_info is not SGX TCB info v2/v3 (id {tcb_info.get('id')!r})")
        if qe_identity.get("id") != "QE" or qe_identity.get("version") != 2:
            raise QuoteVerificationError(f"qe_identity is not a QE identity v2 (id {qe_identity.get('id')!r})")
        window = OPEN
        for chain in (tcb_chain, qe_chain, crl_chain):
            window = window.narrowed(
                chain.window.not_before, chain.window.not_after, chain.window.bounded_by, chain.window.bounded_by_after
            )
        for crl, what in ((root_crl, "root_ca_crl"), (pck_crl, "pck_crl")):
            if crl.next_update_utc is None:
                raise CollateralError(f"{what} has no nextUpdate")
            window = window.narrowed(
                _ts(crl.last_update_utc), _ts(crl.next_update_utc), f"{what}.thisUpdate", f"{what}.nextUpdate"
            )
        for data, what in ((tcb_info, "tcb_info"), (qe_identity, "qe_identity")):
            window = window.narrowed(
                _iso(data.get("issueDate"), f"{what}.issueDate"),
                _iso(data.get("nextUpdate"), f"{what}.nextUpdate"),
                f"{what}.issueDate",
                f"{what}.nextUpdate",
            )
        checked = _CheckedCollateral(root, tcb_info, qe_identity, root_crl, pck_crl, pck_issuer, window)
        self._remember(self._collateral, key, checked)
        return checked

    def _check_pck(self, quote: Quote) -> _CheckedPck:
        key = quote.certification_data
        cached = self._pck.get(key)
        if cached is not None:
            self._pck.move_to_end(key)
            return cached
        certs = load_certificates(key, "the quote's PCK certificate chain", QuoteFormatError)
        if len(certs) != 3:
            raise QuoteVerificationError(f"the PCK chain has {len(certs)} certificates, not 3 (leaf, CA, root)")
        leaf, intermediate, root_cert = certs
        if (
            "SGX PCK Certificate" not in _cn(leaf)
            or "CA" not in _cn(intermediate)
            or "SGX Root CA" not in _cn(root_cert)
        ):
            raise QuoteVerificationError(
                f"the PCK chain's names are wrong ({_cn(leaf)!r}, {_cn(intermediate)!r}, {_cn(root_cert)!r})"
            )
        chain = self._chain(certs, "PCK chain")
        checked = _CheckedPck(leaf, intermediate, chain.root, parse_pck_extension(leaf), chain.window)
        self._remember(self._pck, key, checked)
        return checked

    def _check_qe_report(self, quote: Quote, pck: _CheckedPck) -> None:
        """The QE report's signature by the PCK key, verified once per (PCK chain, report, signature)."""
        key = (quote.certification_data, quote.qe_report.raw, quote.qe_report_signature)
        if key in self._qe_reports:
            self._qe_reports.move_to_end(key)
            return
        _raw_sig(pck.leaf.public_key(), quote.qe_report_signature, quote.qe_report.raw, "the QE report signature")
        self._remember(self._qe_reports, key, True)

    def verify(
        self,
        raw_quote: bytes,
        collateral: Collateral,
        *,
        now: int,
        allow_debug: bool = False,
        allow_expired: bool = False,
    ) -> SgxVerdict:
        """Verify ``raw_quote`` at time ``now`` (seconds since the epoch); raise on any failure."""
        return self.verify_parsed(
            parse_quote(raw_quote), collateral, now=now, allow_debug=allow_debug, allow_expired=allow_expired
        )

    def verify_parsed(
        self,
        quote: Quote,
        collateral: Collateral,
        *,
        now: int,
        allow_debug: bool = False,
        allow_expired: bool = False,
    ) -> SgxVerdict:
        """:meth:`verify` of a quote already parsed with :func:`parse_quote` (its ``raw`` is what is verified)."""
        if quote.header.qe_vendor_id != INTEL_QE_VENDOR_ID:
            raise QuoteVerificationError(f"unknown QE vendor ID {quote.header.qe_vendor_id.hex()}")
        try:
            pck = self._check_pck(quote)
        except (ValueError, UnsupportedAlgorithm) as err:  # cryptography parses certificate fields lazily
            raise QuoteFormatError(f"the quote's PCK certificate chain is malformed: {err}") from None
        try:
            checked = self._check_collateral(collateral)
        except (ValueError, UnsupportedAlgorithm) as err:
            raise CollateralError(f"the collateral's certificates or CRLs are malformed: {err}") from None
        pair_key = (quote.certification_data, collateral.cache_key)
        pairing = self._pairings.get(pair_key)
        if pairing is None:
            pairing = self._pair(pck, checked)
            self._remember(self._pairings, pair_key, pairing)
        window = pairing.window
        expired = not window.contains(now)
        if expired and not allow_expired:
            raise QuoteVerificationError(
                f"the collateral is not valid at {_iso_time(now)}: it holds from {_iso_time(window.not_before)} "
                f"({window.bounded_by}) to {_iso_time(window.not_after)} ({window.bounded_by_after})",
                hint="fetch fresh collateral from the PCS/PCCS",
            )
        self._check_qe_report(quote, pck)
        expected = hashlib.sha256(quote.attestation_key + quote.qe_auth_data).digest() + bytes(32)
        if quote.qe_report.report_data != expected:
            raise QuoteVerificationError("the QE report does not bind the attestation key (report_data mismatch)")
        qe_key = (quote.qe_report.raw, collateral.cache_key)
        qe = self._qe_statuses.get(qe_key)
        if qe is None:
            qe = self._qe_status(quote, checked.qe_identity)
            self._remember(self._qe_statuses, qe_key, qe)
        qe_status, qe_advisories = qe
        _raw_sig(
            _attestation_key(quote.attestation_key),
            quote.isv_signature,
            quote.signed,
            "the ISV enclave report signature",
        )
        platform_status, platform_advisories, tcb_date = (
            pairing.platform_status,
            pairing.platform_advisories,
            pairing.tcb_date,
        )
        status = _converge(platform_status, qe_status)
        if quote.report.debug and not allow_debug:
            raise QuoteVerificationError(
                "the enclave is a DEBUG enclave: its memory is open to the host",
                hint="debug enclaves are refused unless explicitly allowed",
            )
        advisories = tuple(sorted(set(platform_advisories) | set(qe_advisories)))
        evaluation = checked.tcb_info.get("tcbEvaluationDataNumber")
        return SgxVerdict(
            quote=quote,
            pck=pck.extension,
            root=pck.root.name,
            status=status,
            advisory_ids=advisories,
            platform_status=platform_status,
            platform_advisory_ids=platform_advisories,
            qe_status=qe_status,
            qe_advisory_ids=tuple(qe_advisories),
            tcb_date=tcb_date,
            tcb_evaluation_data_number=evaluation if isinstance(evaluation, int) else None,
            window=window,
            collateral_expired=expired,
        )

    def _pair(self, pck: _CheckedPck, checked: _CheckedCollateral) -> _Pairing:
        """The checks of a PCK chain against collateral that no quote field changes: same root, neither PCK
        certificate revoked, the CRL's CA is the PCK's issuer, TCB info for this FMSPC and PCEID, the joint
        validity window and the platform's TCB level."""
        if pck.root is not checked.root:
            raise QuoteVerificationError("the quote's PCK chain and the collateral end in different roots")
        if checked.root_crl.get_revoked_certificate_by_serial_number(pck.intermediate.serial_number) is not None:
            raise QuoteVerificationError("the PCK CA certificate is revoked")
        if checked.pck_crl_issuer.subject != pck.leaf.issuer:
            raise QuoteVerificationError("the PCK CRL is for another CA than the one that issued the PCK certificate")
        if checked.pck_crl.get_revoked_certificate_by_serial_number(pck.leaf.serial_number) is not None:
            raise QuoteVerificationError("the PCK certificate is revoked")
        window = checked.window.narrowed(
            pck.window.not_before, pck.window.not_after, pck.window.bounded_by, pck.window.bounded_by_after
        )
        tcb = checked.tcb_info
        if bytes.fromhex(str(tcb.get("fmspc", ""))) != pck.extension.fmspc:
            raise QuoteVerificationError(
                f"the TCB info is for FMSPC {tcb.get('fmspc')}, the PCK certificate says "
                f"{pck.extension.fmspc.hex().upper()}"
            )
        if bytes.fromhex(str(tcb.get("pceId", ""))) != pck.extension.pceid:
            raise QuoteVerificationError("the TCB info's PCEID differs from the PCK certificate's")
        status, advisories, tcb_date = self._platform_status(pck.extension, tcb)
        return _Pairing(window, status, tuple(advisories), tcb_date)

    @staticmethod
    def _qe_status(quote: Quote, identity: dict[str, Any]) -> tuple[str, list[str]]:
        report = quote.qe_report
        try:
            misc, misc_mask = int(identity["miscselect"], 16), int(identity["miscselectMask"], 16)
            attrs, attrs_mask = bytes.fromhex(identity["attributes"]), bytes.fromhex(identity["attributesMask"])
            mrsigner, prod = bytes.fromhex(identity["mrsigner"]), int(identity["isvprodid"])
            levels = identity["tcbLevels"]
        except (KeyError, TypeError, ValueError) as err:
            raise CollateralError(f"qe_identity is malformed: {err}") from None
        if report.misc_select & misc_mask != misc & misc_mask:
            raise QuoteVerificationError("the quoting enclave's MISCSELECT does not match its QE identity")
        if (
            len(attrs) != 16
            or len(attrs_mask) != 16
            or any((a & m) != (b & m) for a, b, m in zip(report.attributes, attrs, attrs_mask, strict=True))
        ):
            raise QuoteVerificationError("the quoting enclave's attributes do not match its QE identity")
        if report.mr_signer != mrsigner or report.isv_prod_id != prod:
            raise QuoteVerificationError("the quoting enclave is not the one the QE identity names")
        for level in levels:
            if int(level["tcb"]["isvsvn"]) <= report.isv_svn:
                return str(level["tcbStatus"]), list(level.get("advisoryIDs") or [])
        raise QuoteVerificationError(f"the quoting enclave's ISV SVN {report.isv_svn} is below every QE TCB level")

    @staticmethod
    def _platform_status(pck: PckExtension, tcb: dict[str, Any]) -> tuple[str, list[str], str | None]:
        try:
            for level in tcb["tcbLevels"]:
                body = level["tcb"]
                if "sgxtcbcomponents" in body:
                    svns = [int(c["svn"]) for c in body["sgxtcbcomponents"]]
                else:
                    svns = [int(body[f"sgxtcbcomp{i:02d}svn"]) for i in range(1, 17)]
                if len(svns) != 16:
                    raise CollateralError("tcb_info level without 16 SGX TCB components")
                if all(p >= s for p, s in zip(pck.tcb_components, svns, strict=True)) and pck.pcesvn >= int(
                    body["pcesvn"]
                ):
                    status = str(level["tcbStatus"])
                    if status not in STATUSES:
                        raise CollateralError(f"tcb_info has unknown TCB status {status!r}")
                    return status, list(level.get("advisoryIDs") or []), level.get("tcbDate")
        except (KeyError, TypeError, ValueError) as err:
            raise CollateralError(f"tcb_info is malformed: {err}") from None
        raise QuoteVerificationError("the platform's TCB is below every level of the TCB info (not supported)")


@functools.lru_cache(maxsize=256)
def _attestation_key(raw: bytes) -> ec.EllipticCurvePublicKey:
    """The quote's attestation key (a platform's quotes carry the same one: decoded and checked once per key)."""
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + raw)
    except ValueError:
        raise QuoteVerificationError("the quote's attestation key is not a P-256 point") from None


def _converge(platform: str, qe: str) -> str:
    if qe == "Revoked" or platform == "Revoked":
        return "Revoked"
    if qe == "OutOfDate":
        if platform in ("UpToDate", "SWHardeningNeeded"):
            return "OutOfDate"
        if platform in ("ConfigurationNeeded", "ConfigurationAndSWHardeningNeeded"):
            return "OutOfDateConfigurationNeeded"
    return platform
