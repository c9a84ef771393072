"""``sealpod image ...``: the tenant's tools: encrypt, sign, verify, keygen."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sealpod.cli.common import CaFile, TlsVerify, err_console, escape, out_console, parse_bool, registry_options, run
from sealpod.cli.policy import PolicyOption, RegistriesDOption, enforce
from sealpod.cli.pull import PlatformOption, platform_or_host
from sealpod.errors import KeyFileError, UsageError

if TYPE_CHECKING:
    from sealpod.oci.source import ImageStore

app = typer.Typer(help="Tenant tools: encrypt, sign and verify images; make signing keys.", no_args_is_help=True)


@app.command()
def encrypt(
    source: Annotated[str, typer.Argument(help="The plain image: docker://REF, REF or oci:DIR[:TAG].")],
    destination: Annotated[str, typer.Argument(help="Where the encrypted image goes (same forms).")],
    recipient: Annotated[
        list[str],
        typer.Option(
            "--recipient",
            "-r",
            help="jwe:PUBKEY (PEM, DER or JWK) or provider:NAME[:PARAM] (from "
            "$OCICRYPT_KEYPROVIDER_CONFIG); repeat for several.",
        ),
    ],
    layer: Annotated[
        list[int] | None,
        typer.Option("--layer", help="Encrypt only this layer (0-based; negative counts from the end); repeatable."),
    ] = None,
    platform: PlatformOption = None,
    src_tls_verify: Annotated[str, typer.Option("--src-tls-verify", metavar="true|false")] = "true",
    dest_tls_verify: Annotated[str, typer.Option("--dest-tls-verify", metavar="true|false")] = "true",
    ca_file: CaFile = None,
) -> None:
    """Encrypt an image's layers as ocicrypt does (skopeo, containerd and CoCo decrypt the result).

    Media types get +encrypted, the wrapped keys go into the layer annotations, the config and its diff_ids are
    unchanged. Each layer streams through: none is held in memory.
    """

    def action() -> None:
        from sealpod.oci.copy import copy_image
        from sealpod.oci.source import RegistryOptions, open_store, parse_location
        from sealpod.ocicrypt.layers import LayerEncryption, Recipients

        recipients = Recipients()
        for item in recipient:
            recipients.add(item)
        rewriter = LayerEncryption(recipients, layer or None)
        src = open_store(parse_location(source), RegistryOptions(parse_bool(src_tls_verify), ca_file))
        dst = open_store(parse_location(destination), RegistryOptions(parse_bool(dest_tls_verify), ca_file))
        try:
            image = copy_image(src, dst, platform_or_host(platform), rewriter=rewriter)
        finally:
            src.close()
            dst.close()
        encrypted = sum(1 for d in image.manifest.layers if d.media_type.endswith("+encrypted"))
        err_console.print(escape(f"encrypted {encrypted} of {len(image.manifest.layers)} layers into {dst.describe()}"))
        out_console.print(image.manifest_digest)

    run(action)


def _passphrase(passphrase_file: Path | None, *, confirm: bool) -> bytes:
    if passphrase_file is not None:
        try:
            return passphrase_file.read_bytes().rstrip(b"\r\n")
        except OSError as err:
            raise KeyFileError(f"cannot read passphrase file {passphrase_file}: {err.strerror}") from None
    if "COSIGN_PASSWORD" in os.environ:
        return os.environ["COSIGN_PASSWORD"].encode()
    if not sys.stdin.isatty():
        raise KeyFileError("no passphrase", hint="use --passphrase-file FILE or set COSIGN_PASSWORD")
    return str(typer.prompt("Passphrase", hide_input=True, confirmation_prompt=confirm)).encode()


@app.command()
def keygen(
    output_key_prefix: Annotated[str, typer.Option(help="Writes PREFIX.key and PREFIX.pub.")] = "cosign",
    passphrase_file: Annotated[
        Path | None, typer.Option(help="File holding the passphrase [default: $COSIGN_PASSWORD, else a prompt]")
    ] = None,
    force: Annotated[bool, typer.Option(help="Overwrite existing files.")] = False,
) -> None:
    """Make a cosign-compatible key pair (ECDSA P-256, the private key scrypt+secretbox encrypted)."""

    def action() -> None:
        from sealpod.signature.sigstore import generate_key_pair

        private_path, public_path = Path(f"{output_key_prefix}.key"), Path(f"{output_key_prefix}.pub")
        for path in (private_path, public_path):
            if path.exists() and not force:
                raise UsageError(f"{path} exists", hint="use --force to overwrite it")
        private, public = generate_key_pair(_passphrase(passphrase_file, confirm=True))
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(private)
        public_path.write_bytes(public)
        err_console.print(f"private key written to {private_path}, public key to {public_path}")

    run(action)


@app.command()
def sign(
    image: Annotated[
        str,
        typer.Argument(help="The image to sign: docker://REF or REF (signed as named), or oci:DIR:TAG (--identity)."),
    ],
    key: Annotated[Path | None, typer.Option("--key", help="cosign private key: writes a sigstore attachment.")] = None,
    sign_by: Annotated[
        str | None, typer.Option("--sign-by", help="GPG key fingerprint: writes a simple signature to the lookaside.")
    ] = None,
    passphrase_file: Annotated[Path | None, typer.Option(help="Passphrase of --key (or $COSIGN_PASSWORD).")] = None,
    gpg_home: Annotated[Path | None, typer.Option(help="GnuPG home for --sign-by [default: gpg's].")] = None,
    identity: Annotated[str | None, typer.Option(help="The docker reference to claim [default: IMAGE].")] = None,
    registries_d: RegistriesDOption = None,
    tls_verify: TlsVerify = "true",
    ca_file: CaFile = None,
) -> None:
    """Sign an image (cosign format with --key, GPG simple signing with --sign-by).

    A registry image's signature goes where registries.d says; an OCI layout's (``--key`` only) into the layout itself,
    as a ``sha256-<hex>.sig`` entry that ``cosign verify --local-image`` also reads.
    """

    def action() -> None:
        from sealpod.oci.reference import parse_reference
        from sealpod.oci.source import open_store, parse_location
        from sealpod.signature import gpg, sigstore
        from sealpod.signature.payload import ATOMIC_TYPE, COSIGN_TYPE, make_payload
        from sealpod.signature.registriesd import RegistriesD
        from sealpod.signature.verifier import write_lookaside

        if (key is None) == (sign_by is None):
            raise UsageError("give exactly one of --key (sigstore) and --sign-by (GPG)")
        location = parse_location(image)
        if location.transport == "oci" and (key is None or identity is None):
            raise UsageError(
                "an OCI layout image is signed with --key and --identity",
                hint="--identity names the docker reference the signature claims (the policy's exactReference or "
                "exactRepository); GPG signatures need a registry's lookaside",
            )
        claimed = identity or str(location.reference)
        parse_reference(claimed)
        store = open_store(location, registry_options(tls_verify, ca_file))
        try:
            digest = store.get_manifest(None).digest
            if key is not None:
                private = sigstore.load_private_key(key.read_bytes(), _passphrase(passphrase_file, confirm=False))
                payload = make_payload(COSIGN_TYPE, claimed, digest)
                where = _write_sigstore(store, digest, payload, sigstore.sign(private, payload))
            else:
                assert sign_by is not None
                assert location.reference is not None
                payload = make_payload(ATOMIC_TYPE, claimed, digest)
                signature = gpg.sign(payload, sign_by, home=gpg_home, passphrase_file=passphrase_file)
                base = RegistriesD.load(registries_d).lookaside_base(location.reference, write=True)
                where = write_lookaside(base, digest, signature)
        finally:
            store.close()
        err_console.print(escape(f"signed {digest} as {claimed}: {where}"))

    run(action)


def _write_sigstore(store: ImageStore, digest: str, payload: bytes, signature: bytes) -> str:
    """Attach a sigstore signature in the registry, or in the layout (with cosign's markers); says where."""
    from sealpod.oci.source import LayoutStore, RegistryStore
    from sealpod.signature import layout, sigstore

    if isinstance(store, LayoutStore):
        return f"oci:{store.layout.path}:{layout.write_signature(store, digest, payload, signature)}"
    assert isinstance(store, RegistryStore)
    sigstore.write_attachment(store, digest, payload, signature)
    return f"docker://{store.reference.repository}:{sigstore.attachment_tag(digest)}"


@app.command()
def verify(
    image: Annotated[str, typer.Argument(help="docker://REF, REF or oci:DIR[:TAG].")],
    policy: PolicyOption = None,
    registries_d: RegistriesDOption = None,
    tls_verify: TlsVerify = "true",
    ca_file: CaFile = None,
) -> None:
    """Check an image against the signature policy without pulling it; exit 0 only if accepted."""

    def action() -> None:
        from sealpod.oci.platform import host_platform
        from sealpod.oci.source import open_store, parse_location, resolve

        location = parse_location(image)
        store = open_store(location, registry_options(tls_verify, ca_file))
        try:
            resolved = resolve(store, host_platform())
            scope = enforce(location, store, resolved, policy, registries_d)
        finally:
            store.close()
        out_console.print(
            escape(f"accepted: {location} ({resolved.index_digest or resolved.manifest_digest}) satisfies {scope}")
        )

    run(action)
