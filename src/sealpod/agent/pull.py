"""The enclave's secure pull: everything it needs comes from the KBS after attestation, never from the host.

1. attest (through the KBS client) and fetch the signature policy (image-rs's default URI
   ``kbs:///default/security-policy/test``); a policy's ``kbs://`` key paths are fetched the same way;
2. optional registry credentials (``kbs:///default/credential/test``, a containers auth.json);
3. resolve the image and check its signatures against the policy before any layer is fetched (sigstore
   attachments are always read here, as image-rs does: from the registry, or from the OCI layout itself for
   ``oci:DIR:TAG``, see :mod:`sealpod.signature.layout`);
4. pull, decrypt (image keys wrapped in CoCo packets are opened with KEKs fetched from the KBS by their ``kid``)
   and unpack, committing the rootfs only when every MAC, digest and diff_id matched.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from sealpod.agent.signatures import image_signatures
from sealpod.kbs.client.rcar import KbsClient, KbsClientError
from sealpod.oci.auth import credentials_in
from sealpod.oci.platform import host_platform
from sealpod.oci.pull import PullResult, check_target, unpack_image
from sealpod.oci.source import (
    ImageStore,
    RegistryOptions,
    ResolvedImage,
    open_store,
    parse_location,
    resolve,
)
from sealpod.oci.tarstream import TarLimits
from sealpod.oci.unpack import UnpackOptions
from sealpod.signature.policy import ImageUnderCheck, parse_policy
from sealpod.signature.registriesd import RegistriesD, Section
from sealpod.signature.verifier import ImageSignatures

DEFAULT_POLICY_URI = "kbs:///default/security-policy/test"
DEFAULT_CREDENTIALS_URI = "kbs:///default/credential/test"


@dataclass(frozen=True)
class AgentSettings:
    """Where the agent finds its configuration in the KBS, and how it reaches the registry."""

    policy_uri: str = DEFAULT_POLICY_URI
    credentials_uri: str | None = DEFAULT_CREDENTIALS_URI
    tls_verify: bool = True
    ca_file: str | None = None


def optional_resource(client: KbsClient, uri: str) -> bytes | None:
    """A KBS resource, or None when the KBS says it does not exist."""
    try:
        return client.get_resource(uri)
    except KbsClientError as err:
        if err.variant == "PluginInternalError" and "does not exist" in str(err):
            return None
        raise


def preload() -> None:
    """Import what only a pull of layers needs (ocicrypt, ~5 ms): a fresh enclave that reopens its sealed rootfs
    never loads it, a pre-launched one loads it before it is asked to run."""
    import sealpod.ocicrypt.layers  # noqa: F401


@dataclass
class VerifiedImage:
    """An image whose signatures passed the policy, with its open store (close it, or use it as a context)."""

    store: ImageStore
    resolved: ResolvedImage
    client: KbsClient

    def fetch_into(self, rootfs: Path, limits: TarLimits | None = None) -> PullResult:
        """Pull, decrypt (KEKs from the KBS) and unpack the verified image into ``rootfs``, each layer within
        ``limits`` (the defaults when None)."""
        from sealpod.ocicrypt.layers import DecryptionKeys, LayerDecryption  # see preload

        check_target(rootfs.absolute())
        keys = DecryptionKeys(kek_getter=self.client.get_resource)
        options = UnpackOptions(limits=limits or TarLimits())
        transform = LayerDecryption(self.resolved.manifest, keys)
        return unpack_image(self.store, self.resolved, rootfs, options=options, transform=transform)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> VerifiedImage:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def verify_image(image: str, client: KbsClient, settings: AgentSettings | None = None) -> VerifiedImage:
    """Fetch the signature policy and registry credentials from the KBS, resolve ``image`` and check its signatures
    against the policy; no layer is fetched."""
    settings = settings or AgentSettings()
    policy = parse_policy(client.get_resource(settings.policy_uri), getter=client.get_resource)
    location = parse_location(image)
    credentials = None
    if settings.credentials_uri and location.reference is not None:
        auth_json = optional_resource(client, settings.credentials_uri)
        if auth_json is not None:
            credentials = credentials_in(auth_json, location.reference.repository, settings.credentials_uri)
    store = open_store(location, RegistryOptions(settings.tls_verify, settings.ca_file, credentials))
    try:
        registries = RegistriesD(Section(use_sigstore_attachments=True), {})
        found: list[ImageSignatures] = []
        with ThreadPoolExecutor(1, thread_name_prefix="signatures") as fetcher:

            def signatures_of(digest: str) -> None:  # fetched beside the rest of the manifests and the config
                found.append(image_signatures(location, digest, store, registries))
                fetcher.submit(found[0].prefetch)

            resolved = resolve(store, host_platform(), signatures_of)
        signatures, digest = found[0], found[0].manifest_digest
        subject = ImageUnderCheck(location.transport, location.reference, digest, path=location.path, tag=location.tag)
        policy.evaluate(subject, signatures)
    except BaseException:
        store.close()
        raise
    return VerifiedImage(store, resolved, client)
