"""Encrypting and decrypting image layers: recipients and decryption keys as the CLI names them, the rewriter
``sealpod image encrypt`` plugs into an image copy, and the transform ``sealpod pull`` plugs into its pipeline.

Recipients: ``jwe:PUBKEY`` (PEM, DER or JWK; a JWK's ``alg`` is honoured) and ``provider:NAME[:PARAM]``.
Decryption keys: ``PRIVKEY[:pass=SECRET]``, ``provider:NAME[:PARAM]`` and ``kek-store:FILE`` (CoCo packets opened
with a local KEK store; inside the enclave the KBS client is the key getter instead).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sealpod.errors import CryptoError, UsageError
from sealpod.oci import mediatypes as mt
from sealpod.oci.models import Descriptor, Manifest
from sealpod.ocicrypt.cipher import LayerDecryptor, LayerEncryptor
from sealpod.ocicrypt.keys import KeySpec, PrivateKey, load_private_key, load_public_key, read_key_file
from sealpod.ocicrypt.keywrap import jwe, kbs, keyprovider
from sealpod.ocicrypt.keywrap.protocol import ProviderRequest
from sealpod.ocicrypt.options import (
    ANNOTATION_KEYS_PREFIX,
    ANNOTATION_PUBOPTS,
    PrivateOptions,
    PublicOptions,
    b64decode,
    b64encode,
    scheme_annotations,
)


@dataclass(slots=True)
class Recipients:
    """Who an encrypted layer's key is wrapped for."""

    jwe: list[jwe.JweRecipient] = field(default_factory=list)
    providers: dict[str, list[bytes]] = field(default_factory=dict)
    provider_config: str | None = None  # the keyprovider config file [default: $OCICRYPT_KEYPROVIDER_CONFIG]
    configs: dict[str, keyprovider.ProviderConfig] = field(default_factory=dict)

    def add(self, text: str) -> None:
        """Add ``jwe:FILE`` or ``provider:NAME[:PARAM]``."""
        scheme, sep, rest = text.partition(":")
        if not sep or not rest:
            raise UsageError(f"invalid recipient {text!r}", hint="use jwe:PUBKEY.pem or provider:NAME[:PARAM]")
        if scheme == "jwe":
            raw = read_key_file(Path(rest))
            alg = None
            if raw.strip().startswith(b"{"):
                try:
                    alg = json.loads(raw).get("alg")
                except (ValueError, AttributeError):
                    alg = None
            recipient = jwe.JweRecipient(load_public_key(raw, source=rest), alg if isinstance(alg, str) else None)
            recipient.algorithm()
            self.jwe.append(recipient)
        elif scheme == "provider":
            name, _, param = rest.partition(":")
            self.configs[name] = keyprovider.provider(name, self.provider_config)
            self.providers.setdefault(name, []).append(param.encode() if param else b"Enabled")
        else:
            raise UsageError(
                f"unsupported recipient scheme {scheme!r}",
                hint="sealpod encrypts to jwe:PUBKEY and provider:NAME[:PARAM] (pgp, pkcs7, pkcs11 are not supported)",
            )

    def __bool__(self) -> bool:
        return bool(self.jwe or self.providers)

    def wrap(self, private: PrivateOptions) -> dict[str, str]:
        """The ``org.opencontainers.image.enc.keys.*`` annotations for ``private``."""
        optsdata = private.to_json()
        annotations: dict[str, str] = {}
        if self.jwe:
            annotations[ANNOTATION_KEYS_PREFIX + jwe.SCHEME] = b64encode(jwe.wrap(optsdata, self.jwe))
        for name, params in self.providers.items():
            request = ProviderRequest("keywrap", {name: params}, optsdata=optsdata)
            annotation = keyprovider.call(self.configs[name], request)
            annotations[f"{ANNOTATION_KEYS_PREFIX}provider.{name}"] = b64encode(annotation)
        return annotations


@dataclass(slots=True)
class DecryptionKeys:
    """What may open encrypted layers."""

    private_keys: list[PrivateKey] = field(default_factory=list)
    providers: dict[str, list[bytes]] = field(default_factory=dict)
    kek_getter: kbs.KeyGetter | None = None
    provider_config: str | None = None  # the keyprovider config file [default: $OCICRYPT_KEYPROVIDER_CONFIG]
    configs: dict[str, keyprovider.ProviderConfig] = field(default_factory=dict)

    def add(self, text: str) -> None:
        """Add ``PRIVKEY[:pass=SECRET]``, ``provider:NAME[:PARAM]`` or ``kek-store:FILE``."""
        if text.startswith("provider:"):
            name, _, param = text[len("provider:") :].partition(":")
            self.configs[name] = keyprovider.provider(name, self.provider_config)
            self.providers.setdefault(name, []).append(param.encode() if param else b"Enabled")
        elif text.startswith("kek-store:"):
            self.kek_getter = kbs.KekStore(Path(text[len("kek-store:") :])).get
        else:
            spec = KeySpec.parse(text)
            self.private_keys.append(load_private_key(read_key_file(spec.path), spec.password, source=str(spec.path)))

    def __bool__(self) -> bool:
        return bool(self.private_keys or self.providers or self.kek_getter)


def _describe_recipients(schemes: dict[str, list[bytes]]) -> str:
    parts = []
    for scheme, values in sorted(schemes.items()):
        if scheme == jwe.SCHEME:
            for value in values:
                try:
                    parts.append("jwe recipients: " + ", ".join(jwe.describe(value)))
                except CryptoError:
                    parts.append("jwe (unreadable)")
        elif scheme == kbs.SCHEME:
            for value in values:
                try:
                    parts.append(f"{scheme} (kid {kbs.AnnotationPacket.from_json(value).kid})")
                except CryptoError:
                    parts.append(f"{scheme} (unreadable)")
        else:
            parts.append(scheme)
    return "; ".join(parts) or "no recipients at all"


def _is_packet(value: bytes) -> bool:
    """Whether a provider's annotation is a CoCo packet (whatever the provider was called when encrypting)."""
    try:
        kbs.AnnotationPacket.from_json(value)
    except CryptoError:
        return False
    return True


def open_options(descriptor: Descriptor, keys: DecryptionKeys) -> tuple[PrivateOptions, PublicOptions]:
    """Unwrap an encrypted layer's options with the first key that opens them."""
    annotations = descriptor.annotations or {}
    if ANNOTATION_PUBOPTS not in annotations:
        raise CryptoError(f"encrypted layer {descriptor.digest} has no {ANNOTATION_PUBOPTS} annotation")
    public = PublicOptions.from_json(b64decode(annotations[ANNOTATION_PUBOPTS], ANNOTATION_PUBOPTS))
    schemes = scheme_annotations(annotations)
    optsdata: bytes | None = None
    for value in schemes.get(jwe.SCHEME, []):
        if keys.private_keys and optsdata is None:
            optsdata = jwe.unwrap(value, keys.private_keys)
    for scheme, values in schemes.items():
        if optsdata is not None or not scheme.startswith("provider."):
            continue
        name = scheme[len("provider.") :]
        for value in values:
            if keys.kek_getter is not None and (name == kbs.PROVIDER_NAME or _is_packet(value)):
                optsdata = kbs.unwrap(value, keys.kek_getter)
            elif name in keys.providers:
                request = ProviderRequest("keyunwrap", {name: keys.providers[name]}, annotation=value)
                optsdata = keyprovider.call(keys.configs[name], request)
    if optsdata is None:
        raise CryptoError(
            f"no decryption key opens layer {descriptor.digest}; it is wrapped for: {_describe_recipients(schemes)}",
            hint="pass the matching --decryption-key (a private key, provider:NAME, or kek-store:FILE)",
        )
    return PrivateOptions.from_json(optsdata), public


class LayerDecryption:
    """The pull pipeline's blob transform: opens every encrypted layer's options up front (so a missing key fails
    before any blob is fetched), then decrypts each encrypted blob as it streams."""

    def __init__(self, manifest: Manifest, keys: DecryptionKeys) -> None:
        self.options: dict[str, tuple[PrivateOptions, PublicOptions]] = {}
        for descriptor in manifest.layers:
            if mt.is_encrypted(descriptor.media_type):
                if not keys:
                    raise CryptoError(
                        f"layer {descriptor.digest} is encrypted ({descriptor.media_type})",
                        hint="pass --decryption-key (a private key, provider:NAME, or kek-store:FILE)",
                    )
                self.options[descriptor.digest] = open_options(descriptor, keys)

    def __call__(self, descriptor: Descriptor, chunks: Iterator[bytes]) -> Iterator[bytes]:
        if descriptor.digest not in self.options:
            return chunks
        private, public = self.options[descriptor.digest]
        return LayerDecryptor(private, public, what=f"encrypted layer {descriptor.digest}").stream(chunks)


class LayerEncryption:
    """The image copy's layer rewriter: encrypts the chosen layers for ``recipients``."""

    def __init__(self, recipients: Recipients, layers: list[int] | None = None) -> None:
        if not recipients:
            raise UsageError("encryption needs at least one --recipient")
        self.recipients = recipients
        self.layers = layers
        self._encryptors: dict[int, LayerEncryptor] = {}

    def select(self, count: int) -> set[int]:
        """Which of ``count`` layers to encrypt: all, or those of ``--layer`` (negative counts from the end)."""
        if self.layers is None:
            return set(range(count))
        for n in self.layers:
            if not -count <= n < count:
                raise UsageError(f"--layer {n} is out of range: the image has {count} layers")
        return {n % count for n in self.layers}

    def rewrite(
        self, index: int, total: int, descriptor: Descriptor, chunks: Iterator[bytes]
    ) -> Iterator[bytes] | None:
        if mt.is_encrypted(descriptor.media_type) or mt.layer_compression(descriptor.media_type) is None:
            return None
        if index not in self.select(total):
            return None
        encryptor = LayerEncryptor(plain_digest=descriptor.digest)  # the source stream verifies that digest
        self._encryptors[index] = encryptor
        return encryptor.stream(chunks)

    def finish(self, index: int, original: Descriptor, uploaded: Descriptor) -> Descriptor:
        private, public = self._encryptors.pop(index).options()
        annotations = dict(original.annotations or {})
        annotations.update(self.recipients.wrap(private))
        annotations[ANNOTATION_PUBOPTS] = b64encode(public.to_json())
        return Descriptor(
            media_type=mt.to_oci(original.media_type) + mt.ENCRYPTED_SUFFIX,
            digest=uploaded.digest,
            size=uploaded.size,
            annotations=dict(sorted(annotations.items())),
            urls=original.urls,
        )
