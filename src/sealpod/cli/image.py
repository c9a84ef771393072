"""``sealpod image ...``: the tenant's tools (encrypt; signing comes next)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from sealpod.cli.common import CaFile, err_console, out_console, parse_bool, run
from sealpod.cli.pull import PlatformOption, platform_or_host

app = typer.Typer(help="Tenant tools: encrypt images (sign and verify come next).", no_args_is_help=True)


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
