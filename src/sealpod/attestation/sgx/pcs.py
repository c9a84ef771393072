"""Fetching collateral from Intel's PCS or a PCCS (API v4), with a local cache that honours ``nextUpdate``."""

from __future__ import annotations

import hashlib
import json
import time
from datetime import datetime
from pathlib import Path
from urllib.parse import unquote

from cryptography import x509

from sealpod._internal.http_client import HttpClient, TransportError
from sealpod.attestation.sgx.collateral import Collateral, der_crl, top_level_raw
from sealpod.attestation.sgx.quote import Quote
from sealpod.errors import CollateralError

_CHAIN_HEADERS = {
    "tcb": ("TCB-Info-Issuer-Chain", "SGX-TCB-Info-Issuer-Chain"),
    "qe": ("SGX-Enclave-Identity-Issuer-Chain",),
    "pckcrl": ("SGX-PCK-CRL-Issuer-Chain",),
}


def pck_ca_type(quote: Quote) -> str:
    """``processor`` or ``platform``: which PCK CA issued the quote's PCK certificate."""
    certs = x509.load_pem_x509_certificates(quote.certification_data.rstrip(b"\0"))
    return issuing_ca_type(certs[0]) if certs else "processor"


def issuing_ca_type(pck: x509.Certificate) -> str:
    """``processor`` or ``platform``: which PCK CA issued ``pck``."""
    return "platform" if "Platform" in pck.issuer.rfc4514_string() else "processor"


def _expiry(kind: str, body: bytes) -> int:
    if kind in ("tcb", "qe"):
        member = "tcbInfo" if kind == "tcb" else "enclaveIdentity"
        data = json.loads(top_level_raw(body, kind)[member])
        stamp = str(data["nextUpdate"]).replace("Z", "+00:00")
        return int(datetime.fromisoformat(stamp).timestamp())
    crl = x509.load_der_x509_crl(der_crl(body))
    return int(crl.next_update_utc.timestamp()) if crl.next_update_utc else 0


class PcsClient:
    """Reads collateral from ``base_url`` (``https://api.trustedservices.intel.com`` or a PCCS address)."""

    def __init__(
        self,
        base_url: str,
        cache_dir: Path | None = None,
        *,
        api_key: str | None = None,
        verify_tls: bool = True,
        timeout: float = 30.0,
    ) -> None:
        self.base = base_url.rstrip("/") + "/sgx/certification/v4"
        self.cache_dir = cache_dir
        headers = {"Ocp-Apim-Subscription-Key": api_key} if api_key else {}
        self._http = HttpClient(timeout=timeout, verify=verify_tls, headers=headers, follow_redirects=True)
        self.fetches = 0

    def close(self) -> None:
        self._http.close()

    def _cached(self, url: str, kind: str, now: int) -> tuple[bytes, bytes]:
        path = self.cache_dir / hashlib.sha256(url.encode()).hexdigest() if self.cache_dir else None
        if path is not None and path.exists():
            entry = json.loads(path.read_text())
            if entry["expires"] > now:
                return bytes.fromhex(entry["body"]), entry["chain"].encode()
        try:
            response = self._http.get(url)
        except TransportError as err:
            raise CollateralError(f"cannot reach the PCS at {url}: {err}") from None
        self.fetches += 1
        if response.status_code != 200:
            raise CollateralError(f"the PCS answered {response.status_code} for {url}")
        chain = ""
        for name in _CHAIN_HEADERS.get(kind, ()):
            if name in response.headers:
                chain = unquote(response.headers[name])
                break
        if kind in _CHAIN_HEADERS and not chain:
            raise CollateralError(f"the PCS response for {url} lacks its issuer chain header")
        body = response.content
        try:
            expires = _expiry(kind, body)
        except (ValueError, KeyError, CollateralError) as err:
            raise CollateralError(f"the PCS response for {url} is malformed: {err}") from None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"url": url, "expires": expires, "body": body.hex(), "chain": chain}))
        return body, chain.encode()

    def collateral(self, fmspc: bytes, ca: str, *, now: int | None = None) -> Collateral:
        """The collateral for a platform (FMSPC) and PCK CA (``processor`` or ``platform``)."""
        if ca not in ("processor", "platform"):
            raise CollateralError(f"PCK CA type {ca!r} is not processor or platform")
        now = int(time.time()) if now is None else now
        tcb, tcb_chain = self._cached(f"{self.base}/tcb?fmspc={fmspc.hex().upper()}", "tcb", now)
        qe, qe_chain = self._cached(f"{self.base}/qe/identity", "qe", now)
        pck_crl, crl_chain = self._cached(f"{self.base}/pckcrl?ca={ca}&encoding=der", "pckcrl", now)
        root_crl, _ = self._cached(f"{self.base}/rootcacrl", "rootcrl", now)
        return Collateral.from_pcs(
            tcb_info_response=tcb,
            tcb_info_issuer_chain=tcb_chain,
            qe_identity_response=qe,
            qe_identity_issuer_chain=qe_chain,
            pck_crl=pck_crl,
            pck_crl_issuer_chain=crl_chain,
            root_ca_crl=root_crl,
        )
