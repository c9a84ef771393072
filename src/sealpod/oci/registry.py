"""A client of the OCI distribution API (registry v2) over :mod:`sealpod._internal.http_client`.

Anonymous, basic and bearer-token auth driven by the registry's ``WWW-Authenticate`` challenge; credentials from
containers ``auth.json``; HTTPS with an optional CA, or (only with ``tls_verify=False``) falling back to plain HTTP as
skopeo does; retries with backoff on transient failures; blobs streamed with their digest and size checked as they
pass; pushes of blobs (monolithic or chunked) and manifests.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urljoin

from sealpod._internal.http_client import HttpClient, Response, TlsError, TransportError
from sealpod._internal.tls import verify_setting
from sealpod.errors import AuthError, DigestMismatchError, NotFoundError, RegistryError
from sealpod.oci import mediatypes as mt
from sealpod.oci.auth import Challenge, Credentials, lookup_credentials, parse_challenge
from sealpod.oci.digest import Verifier, digest_bytes
from sealpod.oci.models import MAX_MANIFEST_BYTES, Descriptor

log = logging.getLogger(__name__)

CHUNK = 512 * 1024
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class FetchedManifest:
    """A manifest or index as served: raw bytes, the served media type and the verified digest."""

    raw: bytes
    media_type: str | None
    digest: str


def _error_detail(response: Response) -> str:
    try:
        body = response.json()
        errors = body.get("errors") if isinstance(body, dict) else None
        if isinstance(errors, list) and errors:
            return "; ".join(f"{e.get('code', '?')}: {e.get('message', '')}".strip() for e in errors[:3])
    except (ValueError, AttributeError):
        pass
    text = response.text[:200].strip() if response.content else ""
    return text or response.reason_phrase


class RegistryClient:
    """Talks to one registry host (``host[:port]``)."""

    def __init__(
        self,
        host: str,
        *,
        tls_verify: bool = True,
        ca_file: str | None = None,
        credentials: Credentials | None = None,
        use_auth_files: bool = True,
        retries: int = 4,
        timeout: float = 60.0,
    ) -> None:
        self.host = host
        self.tls_verify = tls_verify
        self.retries = retries
        self._credentials = credentials
        self._use_auth_files = use_auth_files
        self._http = HttpClient(
            verify=verify_setting(tls_verify, ca_file),
            timeout=timeout,
            connect_timeout=15.0,
            follow_redirects=True,
            headers={"User-Agent": "sealpod/0.1"},
        )
        self._scheme: str | None = None
        self._tokens: dict[str, str] = {}
        self._basic: dict[str, Credentials] = {}

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport -------------------------------------------------------------------------------------------

    def _base(self) -> str:
        if self._scheme is None:
            self._scheme = self._probe_scheme()
        return f"{self._scheme}://{self.host}"

    def _probe_scheme(self) -> str:
        try:
            self._http.get(f"https://{self.host}/v2/")
            return "https"
        except TransportError as err:
            if self.tls_verify:
                hint = "is the registry up? for a plain-HTTP or self-signed registry use --tls-verify=false"
                if "CERTIFICATE" in str(err).upper():
                    hint = "pass its CA with --ca-file, or use --tls-verify=false"
                raise RegistryError(f"cannot reach https://{self.host}/v2/: {err}", hint=hint) from None
            log.debug("https to %s failed (%s); trying plain http", self.host, err)
            if isinstance(err, TlsError) and _has_port(self.host):
                return "http"  # it took the connection but speaks no TLS: plain http on the same port (no probe)
        try:
            self._http.get(f"http://{self.host}/v2/")
        except TransportError as err:
            raise RegistryError(
                f"cannot reach registry {self.host} over https or http: {err}",
                hint="check the host and port, and that the registry is running",
            ) from None
        return "http"

    def _creds_for(self, repository: str) -> Credentials | None:
        if self._credentials is not None:
            return self._credentials
        if not self._use_auth_files:
            return None
        return lookup_credentials(f"{self.host}/{repository}" if repository else self.host)

    def _auth_header(self, scope: str) -> dict[str, str]:
        token = self._tokens.get(scope)
        if token:
            return {"Authorization": f"Bearer {token}"}
        basic = self._basic.get(scope)
        if basic:
            pair = base64.b64encode(f"{basic.username}:{basic.password}".encode()).decode()
            return {"Authorization": f"Basic {pair}"}
        return {}

    def _authenticate(self, challenge: Challenge, scope: str, repository: str) -> None:
        creds = self._creds_for(repository)
        if challenge.scheme == "basic":
            if creds is None:
                raise AuthError(
                    f"registry {self.host} requires a username and password",
                    status=401,
                    hint="add them to $REGISTRY_AUTH_FILE or ~/.docker/config.json (skopeo login writes it)",
                )
            self._basic[scope] = creds
            return
        if challenge.scheme != "bearer" or "realm" not in challenge.params:
            raise AuthError(f"registry {self.host} asks for unsupported authentication {challenge.scheme!r}")
        query: dict[str, str] = {}
        if "service" in challenge.params:
            query["service"] = challenge.params["service"]
        query["scope"] = scope
        auth = (creds.username, creds.password) if creds else None
        realm = challenge.params["realm"]
        response = self._http.get(f"{realm}?{urlencode(query)}", auth=auth)
        if response.status_code in (401, 403):
            raise AuthError(
                f"token service {realm} refused {'our credentials' if creds else 'anonymous access'} "
                f"for {scope}: {_error_detail(response)}",
                status=response.status_code,
                hint="check the credentials in your auth.json" if creds else "log in first (skopeo login)",
            )
        if response.status_code != 200:
            raise RegistryError(f"token service {realm} answered {response.status_code}", status=response.status_code)
        try:
            body = response.json()
            token = body.get("token") or body.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise AuthError(f"token service {realm} returned no token")
        self._tokens[scope] = token

    def _send(
        self, method: str, url: str, repository: str, scope: str, *, stream: bool = False, **kwargs: Any
    ) -> Response:
        """One authenticated request with retries; the caller closes a streamed response."""
        attempt = 0
        authenticated = False
        while True:
            headers = {**kwargs.pop("headers", {}), **self._auth_header(scope)}
            kwargs["headers"] = headers
            try:
                response = self._http.request(method, url, stream=stream, **kwargs)
            except TransportError as err:
                if attempt >= self.retries or method in ("POST", "PATCH"):
                    raise RegistryError(f"{method} {url} failed: {err}", hint="the registry is unreachable") from None
                attempt += 1
                self._backoff(attempt, None)
                continue
            if response.status_code == 401 and not authenticated:
                challenge = parse_challenge(response.headers.get("WWW-Authenticate", ""))
                response.close()
                if challenge is None:
                    raise AuthError(f"{self.host} answered 401 without a WWW-Authenticate challenge", status=401)
                self._authenticate(challenge, scope, repository)
                authenticated = True
                continue
            if response.status_code in RETRY_STATUSES and attempt < self.retries and method not in ("POST", "PATCH"):
                attempt += 1
                retry_after = response.headers.get("Retry-After")
                response.close()
                self._backoff(attempt, retry_after)
                continue
            return response

    @staticmethod
    def _backoff(attempt: int, retry_after: str | None) -> None:
        delay = min(0.25 * 2 ** (attempt - 1), 8.0) * (0.5 + random.random())  # noqa: S311 - jitter
        if retry_after and retry_after.isdigit():
            delay = min(float(retry_after), 30.0)
        time.sleep(delay)

    def _check(self, response: Response, what: str) -> None:
        if response.is_success:
            return
        response.read()
        detail = _error_detail(response)
        status = response.status_code
        if status == 404:
            raise NotFoundError(f"{what}: not found ({detail})", status=404)
        if status in (401, 403):
            raise AuthError(
                f"{what}: access denied ({detail})",
                status=status,
                hint="check your credentials in auth.json, and that the repository exists",
            )
        raise RegistryError(f"{what}: registry answered {status} ({detail})", status=status)

    # -- reading ---------------------------------------------------------------------------------------------

    def get_manifest(self, repository: str, selector: str, accept: str = mt.MANIFEST_ACCEPT) -> FetchedManifest:
        """A manifest or index by tag or digest; its digest is checked (against the selector or the header)."""
        url = f"{self._base()}/v2/{repository}/manifests/{selector}"
        what = (
            f"manifest {self.host}/{repository}:{selector}"
            if ":" not in selector
            else f"manifest {self.host}/{repository}@{selector}"
        )
        response = self._send(
            "GET", url, repository, f"repository:{repository}:pull", stream=True, headers={"Accept": accept}
        )
        try:
            self._check(response, what)
            length = int(response.headers.get("Content-Length", "0") or 0)
            if length > MAX_MANIFEST_BYTES:
                raise RegistryError(f"{what} is {length} bytes, over the {MAX_MANIFEST_BYTES}-byte bound")
            body = bytearray()
            for chunk in response.iter_raw():
                body += chunk
                if len(body) > MAX_MANIFEST_BYTES:
                    raise RegistryError(f"{what} is over the {MAX_MANIFEST_BYTES}-byte bound")
        finally:
            response.close()
        raw = bytes(body)
        served = response.headers.get("Content-Type")
        media_type = served.split(";")[0].strip() if served else None
        if selector.startswith(("sha256:", "sha512:")):
            algorithm = selector.split(":", 1)[0]
            digest = digest_bytes(raw, algorithm)
            if digest != selector:
                raise DigestMismatchError(f"{what}: the registry served content with digest {digest}")
        else:
            digest = digest_bytes(raw)
            header = response.headers.get("Docker-Content-Digest")
            if header and header.startswith("sha256:") and header != digest:
                raise DigestMismatchError(
                    f"{what}: the content's digest {digest} differs from Docker-Content-Digest {header}"
                )
        return FetchedManifest(raw, media_type, digest)

    def blob_stream(
        self, repository: str, descriptor: Descriptor, *, progress: Progress | None = None
    ) -> Iterator[bytes]:
        """The blob's bytes in chunks; raises :class:`DigestMismatchError` as soon as it is too long, and at the
        end if the digest or size is wrong, so a consumer must not commit anything before the iterator ends."""
        url = f"{self._base()}/v2/{repository}/blobs/{descriptor.digest}"
        response = self._send("GET", url, repository, f"repository:{repository}:pull", stream=True)
        verifier = Verifier(descriptor.digest, descriptor.size, what=f"blob {repository}@{descriptor.digest[:19]}")
        try:
            self._check(response, f"blob {self.host}/{repository}@{descriptor.digest}")
            for chunk in response.iter_raw(CHUNK):
                verifier.update(chunk)
                if progress:
                    progress(len(chunk))
                yield chunk
        except TransportError as err:
            raise RegistryError(f"download of blob {descriptor.digest} broke off: {err}") from None
        finally:
            response.close()
        verifier.verify()

    def get_blob(self, repository: str, descriptor: Descriptor, limit: int) -> bytes:
        """A small blob (a config) whole, verified."""
        if descriptor.size > limit:
            raise RegistryError(f"blob {descriptor.digest} is {descriptor.size} bytes, over the {limit}-byte bound")
        return b"".join(self.blob_stream(repository, descriptor))

    def blob_exists(self, repository: str, digest: str) -> bool:
        """Whether the repository already has the blob."""
        response = self._send(
            "HEAD", f"{self._base()}/v2/{repository}/blobs/{digest}", repository, f"repository:{repository}:pull"
        )
        if response.status_code == 404:
            return False
        self._check(response, f"blob {digest}")
        return True

    # -- writing ---------------------------------------------------------------------------------------------

    def push_blob(
        self,
        repository: str,
        descriptor: Descriptor,
        chunks: Iterable[bytes],
        *,
        chunk_size: int | None = None,
        progress: Progress | None = None,
    ) -> bool:
        """Upload a blob unless the repository has it; monolithic, or chunked in ``chunk_size`` PATCHes.

        Returns False when the blob was already there. The registry checks the digest on completion.
        """
        scope = f"repository:{repository}:pull,push"
        if self.blob_exists(repository, descriptor.digest):
            return False
        start = self._send("POST", f"{self._base()}/v2/{repository}/blobs/uploads/", repository, scope)
        self._check(start, f"starting upload of {descriptor.digest} to {repository}")
        location = self._location(start)
        if chunk_size is None:
            response = self._send(
                "PUT",
                self._with_digest(location, descriptor.digest),
                repository,
                scope,
                content=counted(chunks, progress),
                headers={"Content-Type": "application/octet-stream", "Content-Length": str(descriptor.size)},
            )
        else:
            offset = 0
            for piece in _rechunk(chunks, chunk_size):
                patch = self._send(
                    "PATCH",
                    location,
                    repository,
                    scope,
                    content=piece,
                    headers={
                        "Content-Type": "application/octet-stream",
                        "Content-Range": f"{offset}-{offset + len(piece) - 1}",
                        "Content-Length": str(len(piece)),
                    },
                )
                self._check(patch, f"uploading chunk at {offset} of {descriptor.digest}")
                location = self._location(patch)
                offset += len(piece)
                if progress:
                    progress(len(piece))
            response = self._send(
                "PUT",
                self._with_digest(location, descriptor.digest),
                repository,
                scope,
                headers={"Content-Length": "0"},
            )
        self._check(response, f"completing upload of {descriptor.digest} to {repository}")
        return True

    def upload_blob(self, repository: str, chunks: Iterable[bytes], *, progress: Progress | None = None) -> Descriptor:
        """Upload a blob whose digest is not known in advance: one streamed PATCH, then PUT with the digest
        computed on the way. Returns its descriptor (media type ``application/octet-stream``)."""
        scope = f"repository:{repository}:pull,push"
        start = self._send("POST", f"{self._base()}/v2/{repository}/blobs/uploads/", repository, scope)
        self._check(start, f"starting upload to {repository}")
        hasher = hashlib.sha256()
        count = 0

        def body() -> Iterator[bytes]:
            nonlocal count
            for chunk in counted(chunks, progress):
                hasher.update(chunk)
                count += len(chunk)
                yield chunk

        patch = self._send(
            "PATCH",
            self._location(start),
            repository,
            scope,
            content=body(),
            headers={"Content-Type": "application/octet-stream"},
        )
        self._check(patch, f"uploading a blob to {repository}")
        digest = f"sha256:{hasher.hexdigest()}"
        done = self._send(
            "PUT", self._with_digest(self._location(patch), digest), repository, scope, headers={"Content-Length": "0"}
        )
        self._check(done, f"completing upload of {digest} to {repository}")
        return Descriptor(media_type="application/octet-stream", digest=digest, size=count)

    def _location(self, response: Response) -> str:
        location = response.headers.get("Location")
        if not location:
            raise RegistryError(f"registry {self.host} started an upload without a Location header")
        return str(urljoin(f"{self._base()}/", location))

    @staticmethod
    def _with_digest(location: str, digest: str) -> str:
        return f"{location}{'&' if '?' in location else '?'}{urlencode({'digest': digest})}"

    def push_manifest(self, repository: str, reference: str, raw: bytes, media_type: str) -> str:
        """PUT a manifest or index under a tag or digest; returns its digest."""
        scope = f"repository:{repository}:pull,push"
        response = self._send(
            "PUT",
            f"{self._base()}/v2/{repository}/manifests/{reference}",
            repository,
            scope,
            content=raw,
            headers={"Content-Type": media_type},
        )
        self._check(response, f"pushing manifest {repository}:{reference}")
        digest = digest_bytes(raw)
        served = response.headers.get("Docker-Content-Digest")
        if served and served.startswith("sha256:") and served != digest:
            raise DigestMismatchError(f"registry stored manifest as {served}, expected {digest}")
        return digest


def counted(chunks: Iterable[bytes], progress: Progress | None) -> Iterator[bytes]:
    """Pass chunks through, reporting each one's size to ``progress``."""
    for chunk in chunks:
        if progress:
            progress(len(chunk))
        yield chunk


def _rechunk(chunks: Iterable[bytes], size: int) -> Iterator[bytes]:
    buffer = bytearray()
    for chunk in chunks:
        buffer += chunk
        while len(buffer) >= size:
            yield bytes(buffer[:size])
            del buffer[:size]
    if buffer:
        yield bytes(buffer)


def _has_port(host: str) -> bool:
    """Whether ``host`` names its port (``h:5000``, ``[::1]:5000``): then https and http are the same server."""
    head, colon, port = host.rpartition(":")
    return bool(colon and head and port.isdigit() and not head.endswith(":"))
