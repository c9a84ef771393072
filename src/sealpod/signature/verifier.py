"""Finding and checking an image's signatures: sigstore attachments in its repository (when registries.d enables
them) or in its OCI layout (:mod:`sealpod.signature.layout`, always read), and GPG signatures in its lookaside store.
Implements the policy's ``SignatureVerifier``."""

from __future__ import annotations

import contextlib
from pathlib import Path
from urllib.parse import unquote, urlparse

from sealpod._internal.files import read_bounded
from sealpod._internal.http_client import HttpClient, TransportError
from sealpod.errors import KeyFileError, SealpodError, SignatureError
from sealpod.oci.reference import ImageReference
from sealpod.signature import gpg, sigstore
from sealpod.signature.layout import LayoutStore, read_signatures
from sealpod.signature.payload import ATOMIC_TYPE, COSIGN_TYPE, parse_payload
from sealpod.signature.policy import SignatureCheck
from sealpod.signature.registriesd import RegistriesD, lookaside_url

MAX_LOOKASIDE_SIGNATURES = 64


def read_lookaside(url: str) -> bytes | None:
    """One lookaside signature (``file://`` or ``http(s)://``), or None when it does not exist."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        path = Path(unquote(parsed.path))
        try:
            data = read_bounded(path, gpg.MAX_SIGNATURE_BYTES, "lookaside signature", SignatureError)
        except FileNotFoundError:
            return None
    elif parsed.scheme in ("http", "https"):
        try:
            with HttpClient(timeout=30.0) as http, http.get(url, stream=True) as response:
                if response.status_code == 404:
                    return None
                if response.status_code != 200:
                    raise SignatureError(f"signature store answered {response.status_code} for {url}")
                chunks, total = [], 0
                for chunk in response.iter_raw():
                    chunks.append(chunk)
                    total += len(chunk)
                    if total > gpg.MAX_SIGNATURE_BYTES:
                        break  # refused below, without reading the rest
                data = b"".join(chunks)
        except TransportError as err:
            raise SignatureError(f"cannot fetch signature {url}: {err}") from None
    else:
        raise SignatureError(f"unsupported lookaside URL scheme {parsed.scheme!r} in {url}")
    if len(data) > gpg.MAX_SIGNATURE_BYTES:
        raise SignatureError(f"signature {url} is over {gpg.MAX_SIGNATURE_BYTES} bytes")
    return data


def write_lookaside(base: str, manifest_digest: str, signature: bytes) -> str:
    """Store a signature at the first free ``signature-N`` of a ``file://`` lookaside; returns its URL."""
    parsed = urlparse(base)
    if parsed.scheme != "file":
        raise SignatureError(
            f"signatures can only be written to file:// lookasides, not {base}",
            hint="set lookaside-staging to a file:// URL in registries.d",
        )
    for index in range(MAX_LOOKASIDE_SIGNATURES):
        url = lookaside_url(base, manifest_digest, index)
        path = Path(unquote(urlparse(url).path))
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(signature)
            return url
    raise SignatureError(f"{base} already holds {MAX_LOOKASIDE_SIGNATURES} signatures for {manifest_digest}")


class ImageSignatures:
    """The signatures of one image (by manifest digest), fetched once, checked against the keys asked for.

    The caller says where they are: a registry image's ``store`` (its sigstore attachments, when registries.d
    enables them) and lookaside (by ``reference``), or a ``layout`` of its own."""

    def __init__(
        self,
        reference: ImageReference | None,
        manifest_digest: str,
        store: sigstore.AttachmentStore | None,
        registries: RegistriesD,
        layout: LayoutStore | None = None,
    ) -> None:
        self.reference = reference
        self.manifest_digest = manifest_digest
        self.store = store
        self.registries = registries
        self.layout = layout
        self._sigstore: list[sigstore.AttachedSignature] | None = None
        self._gpg: list[bytes] | None = None

    def _attached(self) -> list[sigstore.AttachedSignature]:
        if self._sigstore is None and self.layout is not None:
            self._sigstore = read_signatures(self.layout, self.manifest_digest)
        if self._sigstore is None:
            self._sigstore = []
            reference, store = self.reference, self.store
            if reference and store and self.registries.section_for(reference).use_sigstore_attachments:
                _, self._sigstore = sigstore.read_attachment(store, self.manifest_digest)
        return self._sigstore

    def prefetch(self) -> None:
        """Fetch the attached signatures now (beside other work, in another thread; call nothing else of this
        object until it returns). A failure is left to the check that reads them, which meets and reports it."""
        with contextlib.suppress(SealpodError, OSError):
            self._attached()

    def _lookaside(self) -> list[bytes]:
        if self._gpg is None:
            self._gpg = []
            if self.reference is not None:
                base = self.registries.lookaside_base(self.reference, write=False)
                for index in range(MAX_LOOKASIDE_SIGNATURES):
                    data = read_lookaside(lookaside_url(base, self.manifest_digest, index))
                    if data is None:
                        break
                    self._gpg.append(data)
        return self._gpg

    def sigstore_claims(self, keys: list[bytes]) -> list[SignatureCheck]:
        """Each attached signature: its claims if one of ``keys`` verifies it."""
        try:
            public = [sigstore.load_public_key(k) for k in keys]
        except KeyFileError as err:
            raise SignatureError(f"a sigstoreSigned key in the policy is unusable: {err}") from None
        out = []
        for attached in self._attached():
            if not any(sigstore.verify(key, attached.payload, attached.signature) for key in public):
                out.append(SignatureCheck(None, None, "a signature does not verify with the policy's keys"))
                continue
            try:
                claims = parse_payload(attached.payload, COSIGN_TYPE)
            except SignatureError as err:
                out.append(SignatureCheck(None, None, str(err)))
                continue
            out.append(SignatureCheck(claims.docker_reference, claims.manifest_digest))
        return out

    def gpg_claims(self, keyrings: list[bytes]) -> list[SignatureCheck]:
        """Each lookaside signature: its claims if gpgv verifies it against ``keyrings``."""
        out = []
        for signature in self._lookaside():
            verified = gpg.verify(signature, keyrings)
            if verified is None:
                out.append(SignatureCheck(None, None, "a signature is not by a key of the policy's keyrings"))
                continue
            try:
                claims = parse_payload(verified.payload, ATOMIC_TYPE)
            except SignatureError as err:
                out.append(SignatureCheck(None, None, str(err)))
                continue
            out.append(SignatureCheck(claims.docker_reference, claims.manifest_digest))
        return out
