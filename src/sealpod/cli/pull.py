"""``sealpod pull`` and ``sealpod inspect``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from sealpod.cli.common import CaFile, TlsVerify, escape, out_console, parse_bool, registry_options, run
from sealpod.cli.policy import PolicyOption, RegistriesDOption
from sealpod.cli.pull_start import platform_or_host, start

if TYPE_CHECKING:
    from sealpod.oci.source import ResolvedImage

__all__ = ["PlatformOption", "inspect", "platform_or_host", "pull"]

PlatformOption = Annotated[
    str | None,
    typer.Option("--platform", help="OS/ARCH[/VARIANT] to pick from a multi-platform image [default: this machine's]"),
]


def pull(
    image: Annotated[str, typer.Argument(help="docker://REF, a bare REF (alpine:3.20) or oci:DIR[:TAG]")],
    rootfs: Annotated[Path, typer.Option("--rootfs", help="Directory to unpack into (new or empty).")],
    platform: PlatformOption = None,
    tls_verify: TlsVerify = "true",
    ca_file: CaFile = None,
    allow_devices: Annotated[bool, typer.Option(help="Create device nodes from the layers (root only).")] = False,
    max_size: Annotated[
        str | None,
        typer.Option("--max-size", help="Most bytes one layer may unpack to, e.g. 2g [default: 256g]."),
    ] = None,
    max_entries: Annotated[
        int | None, typer.Option("--max-entries", help="Most entries one layer may hold [default: 1000000].")
    ] = None,
    policy: PolicyOption = None,
    registries_d: RegistriesDOption = None,
    insecure_policy: Annotated[
        bool, typer.Option("--insecure-policy", help="Skip the signature policy (accept anything), as skopeo's.")
    ] = False,
    decryption_key: Annotated[
        list[str] | None,
        typer.Option(
            "--decryption-key",
            help="For encrypted layers: PRIVKEY[:pass=SECRET] (PEM, DER, JWK), "
            "provider:NAME[:PARAM], or kek-store:FILE; repeatable, tried per layer.",
        ),
    ] = None,
) -> None:
    """Pull IMAGE and unpack it into --rootfs.

    The signature policy is enforced before any layer is fetched; every blob is verified while it streams, and
    nothing is kept unless all of it verified.
    """

    code = run(
        lambda: start(
            image, rootfs, platform, parse_bool(tls_verify), ca_file, allow_devices, max_size, max_entries, policy,
            registries_d, insecure_policy, decryption_key,
        )
    )  # fmt: skip
    if code:
        raise typer.Exit(code)


def _summary(store_name: str, image: ResolvedImage) -> dict[str, Any]:
    config = image.config.config
    return {
        "name": store_name,
        "digest": image.manifest_digest,
        "index_digest": image.index_digest,
        "media_type": image.media_type,
        "platform": str(image.config.platform),
        "created": image.config.created,
        "layers": [layer.to_json_dict() for layer in image.manifest.layers],
        "diff_ids": image.config.rootfs.diff_ids,
        "entrypoint": config.entrypoint if config else None,
        "cmd": config.cmd if config else None,
        "env": config.env if config else None,
        "user": config.user if config else None,
        "working_dir": config.working_dir if config else None,
        "labels": config.labels if config else None,
        "platforms": [str(d.platform) for d in image.index.manifests if d.platform] if image.index else None,
    }


def inspect(
    image: Annotated[str, typer.Argument(help="docker://REF, a bare REF or oci:DIR[:TAG]")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    raw: Annotated[bool, typer.Option("--raw", help="Print the manifest exactly as stored.")] = False,
    platform: PlatformOption = None,
    tls_verify: TlsVerify = "true",
    ca_file: CaFile = None,
) -> None:
    """Show an image's digest, platform, layers and run configuration without pulling its layers."""

    def action() -> None:
        from sealpod.oci.source import open_store, parse_location, resolve

        store = open_store(parse_location(image), registry_options(tls_verify, ca_file))
        try:
            resolved = resolve(store, platform_or_host(platform))
        finally:
            store.close()
        if raw:
            typer.echo(resolved.manifest_raw.decode())
            return
        summary = _summary(store.describe(), resolved)
        if as_json:
            typer.echo(json.dumps(summary, indent=2))
            return
        for key in (
            "name",
            "digest",
            "index_digest",
            "media_type",
            "platform",
            "created",
            "entrypoint",
            "cmd",
            "user",
            "working_dir",
            "env",
        ):
            if summary[key] is not None:
                out_console.print(f"[bold]{key:12}[/] {escape(str(summary[key]))}")
        out_console.print(f"[bold]{'layers':12}[/]")
        for layer in resolved.manifest.layers:
            out_console.print(f"  {layer.digest}  {layer.size:>12,}  {layer.media_type}")

    run(action)
