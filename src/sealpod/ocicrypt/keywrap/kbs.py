"""The CoCo ``provider.attestation-agent`` key wrapper: private options sealed with a KEK that the KBS keeps.

Annotation packet (guest-components' ``AnnotationPacket``):
``{"kid":"kbs:///default/image-kek/<id>","wrapped_data":"<b64>","iv":"<b64>","wrap_type":"A256GCM"}``, where
``wrapped_data`` is AES-256-GCM(KEK, private options) with the tag appended (``A256CTR``: AES-256-CTR, no tag).
The KEK is reached only through a key getter the caller passes in (the enclave's is the KBS client; a tenant's
is a local :class:`KekStore`), so this module never talks to a KBS itself.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sealpod._internal.jsonio import load_object
from sealpod.errors import CryptoError, KeyFileError
from sealpod.ocicrypt.options import b64decode, b64encode

PROVIDER_NAME = "attestation-agent"
SCHEME = f"provider.{PROVIDER_NAME}"
KEK_SIZE = 32
DEFAULT_KEK_REPOSITORY = "default/image-kek"
MAX_PACKET_BYTES = 64 * 1024

#: Resolves a KBS resource URI (``kbs:///repo/type/tag``) to the KEK bytes.
KeyGetter = Callable[[str], bytes]

_RESOURCE = re.compile(r"^[A-Za-z0-9._-]+/[A-Za-z0-9._-]+/[A-Za-z0-9._-]+$")


def resource_path(kid: str) -> str:
    """``repo/type/tag`` of a KBS resource URI in any of the forms CoCo accepts."""
    rest = kid
    if "://" in rest:
        scheme, _, rest = rest.partition("://")
        if scheme != "kbs" and not scheme.startswith("kbs+"):
            raise CryptoError(f"key id {kid!r} is not a kbs:// resource URI")
    parts = rest.split("/")
    if len(parts) == 4:
        parts = parts[1:]
    path = "/".join(parts)
    if not _RESOURCE.match(path):
        raise CryptoError(
            f"key id {kid!r} is not a KBS resource",
            hint="write it as kbs:///<repository>/<type>/<tag>, e.g. kbs:///default/image-kek/app",
        )
    return path


@dataclass(frozen=True, slots=True)
class AnnotationPacket:
    """The annotation's decoded JSON."""

    kid: str
    wrapped_data: bytes
    iv: bytes
    wrap_type: str = "A256GCM"

    def to_json(self) -> bytes:
        """Compact, in guest-components' field order."""
        return json.dumps(
            {
                "kid": self.kid,
                "wrapped_data": b64encode(self.wrapped_data),
                "iv": b64encode(self.iv),
                "wrap_type": self.wrap_type,
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> AnnotationPacket:
        """Parse a v1 packet (newer fields such as ``version`` and ``provider`` are accepted and ignored)."""
        data = load_object(raw, f"{SCHEME} annotation", MAX_PACKET_BYTES, CryptoError)
        kid = data.get("kid") or data.get("key_id")
        if not isinstance(kid, str) or not kid:
            raise CryptoError(f"{SCHEME} annotation has no 'kid'")
        wrap_type = data.get("wrap_type", "A256GCM")
        if wrap_type not in ("A256GCM", "A256CTR"):
            raise CryptoError(f"{SCHEME} annotation: unsupported wrap_type {wrap_type!r} (A256GCM, A256CTR are)")
        return cls(
            kid,
            b64decode(data.get("wrapped_data", ""), f"{SCHEME} wrapped_data"),
            b64decode(data.get("iv", ""), f"{SCHEME} iv"),
            wrap_type,
        )


def wrap(optsdata: bytes, kid: str, kek: bytes) -> bytes:
    """Seal the private options with ``kek``; the packet JSON bytes (which ocicrypt base64s into the annotation)."""
    resource_path(kid)
    if len(kek) != KEK_SIZE:
        raise CryptoError(f"a KEK must be {KEK_SIZE} bytes, not {len(kek)}")
    iv = os.urandom(12)
    return AnnotationPacket(kid, AESGCM(kek).encrypt(iv, optsdata, None), iv).to_json()


def unwrap(packet_json: bytes, get_key: KeyGetter) -> bytes:
    """Open a packet with the KEK the getter returns for its ``kid``."""
    packet = AnnotationPacket.from_json(packet_json)
    kek = get_key(packet.kid)
    if len(kek) != KEK_SIZE:
        raise CryptoError(f"the KEK {packet.kid} is {len(kek)} bytes, not {KEK_SIZE}")
    if packet.wrap_type == "A256CTR":
        if len(packet.iv) != 16:
            raise CryptoError(f"{SCHEME}: A256CTR needs a 16-byte iv")
        decryptor = Cipher(algorithms.AES(kek), modes.CTR(packet.iv)).decryptor()
        return decryptor.update(packet.wrapped_data) + decryptor.finalize()
    if len(packet.iv) != 12:
        raise CryptoError(f"{SCHEME}: A256GCM needs a 12-byte iv, not {len(packet.iv)}")
    try:
        return AESGCM(kek).decrypt(packet.iv, packet.wrapped_data, None)
    except InvalidTag:
        raise CryptoError(
            f"{SCHEME}: the KEK {packet.kid} does not open this layer's key (wrong KEK, or the annotation was altered)"
        ) from None


class KekStore:
    """A local JSON file of KEKs by resource path (``{"default/image-kek/app": "<b64>"}``, the format of CoCo's
    offline_fs_kbc): how a tenant keeps the KEKs it registers with the KBS."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _read(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise KeyFileError(f"KEK store {self.path} is unreadable: {err}") from None
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise KeyFileError(f"KEK store {self.path} must map resource paths to base64 keys")
        return data

    def get(self, kid: str) -> bytes:
        """The KEK for ``kid`` (a key getter)."""
        path = resource_path(kid)
        value = self._read().get(path)
        if value is None:
            raise CryptoError(
                f"no KEK for {kid} in {self.path}", hint="the image was encrypted with a KEK this store does not hold"
            )
        return base64.b64decode(value)

    def find(self, kid: str) -> bytes | None:
        """The KEK for ``kid`` if the store has it."""
        value = self._read().get(resource_path(kid))
        return base64.b64decode(value) if value is not None else None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise read-modify-write across threads and processes (skopeo wraps layers concurrently)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _write(self, data: dict[str, str]) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".keks-")
        try:
            with os.fdopen(fd, "w") as out:
                json.dump(data, out, indent=2, sort_keys=True)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def put(self, kid: str, kek: bytes) -> None:
        """Add a KEK; refuses to replace a different one under the same id."""
        path = resource_path(kid)
        with self._locked():
            data = self._read()
            if path in data:
                if base64.b64decode(data[path]) != kek:
                    raise CryptoError(f"{kid} already names a different KEK in {self.path}")
                return
            data[path] = base64.b64encode(kek).decode()
            self._write(data)

    def get_or_add(self, kid: str, make: Callable[[], bytes]) -> bytes:
        """The KEK for ``kid``; if the store has none, one made by ``make`` is kept and returned."""
        path = resource_path(kid)
        with self._locked():
            data = self._read()
            if path not in data:
                data[path] = base64.b64encode(make()).decode()
                self._write(data)
            return base64.b64decode(data[path])
