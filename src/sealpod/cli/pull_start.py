"""``sealpod pull``'s body and the helpers ``sealpod inspect`` and ``sealpod image`` share, without typer: the
typer command (:mod:`sealpod.cli.pull`) and the fast path (:mod:`sealpod.cli.fast`) both call :func:`start`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sealpod.cli.console import err_console, escape, out_console
from sealpod.cli.policy_check import enforce
from sealpod.cli.values import parse_size

if TYPE_CHECKING:
    from sealpod.oci.models import Manifest, Platform
    from sealpod.oci.pull import BlobTransform
    from sealpod.oci.tarstream import TarLimits
    from sealpod.ocicrypt.layers import DecryptionKeys


def start(
    image: str,
    rootfs: Path,
    platform: str | None,
    tls_verify: bool,
    ca_file: str | None,
    allow_devices: bool,
    max_size: str | None,
    max_entries: int | None,
    policy: Path | None,
    registries_d: Path | None,
    insecure_policy: bool,
    decryption_key: list[str] | None,
) -> int:
    """``sealpod pull``'s body, for typer's command and the fast path alike; returns the exit status."""
    from sealpod.cli.progress import progress_events
    from sealpod.oci.pull import check_target, unpack_image
    from sealpod.oci.source import RegistryOptions, open_store, parse_location, resolve
    from sealpod.oci.unpack import UnpackOptions

    check_target(rootfs.absolute())
    keys = decryption_keys(decryption_key or [])  # read now: a bad key fails before anything is fetched
    store = open_store(parse_location(image), RegistryOptions(tls_verify=tls_verify, ca_file=ca_file))
    try:
        location = parse_location(image)
        resolved = resolve(store, platform_or_host(platform))
        if not insecure_policy:
            scope = enforce(location, store, resolved, policy, registries_d)
            err_console.print(escape(f"signature policy: accepted ({scope})"))
        transform = layer_decryption(resolved.manifest, keys)
        with progress_events() as events:
            events.resolved(resolved)
            result = unpack_image(
                store,
                resolved,
                rootfs,
                options=UnpackOptions(allow_devices=allow_devices, limits=unpack_limits(max_size, max_entries)),
                events=events,
                transform=transform,
            )
    finally:
        store.close()
    for item in result.skipped:
        err_console.print(f"[yellow]skipped:[/] {escape(item)}")
    entries = sum(layer.entries for layer in result.layers)
    err_console.print(
        escape(
            f"unpacked {store.describe()} ({result.image.manifest_digest}): {len(result.layers)} layers, "
            f"{entries} entries into {result.rootfs}"
        )
    )
    out_console.print(result.image.manifest_digest)
    return 0


def platform_or_host(text: str | None) -> Platform:
    """The ``--platform`` value, or this machine's."""
    from sealpod.oci.platform import host_platform, parse_platform

    return parse_platform(text) if text else host_platform()


def decryption_keys(items: list[str]) -> DecryptionKeys | None:
    """The --decryption-key values read, or None without any (ocicrypt and its crypto are then not imported)."""
    if not items:
        return None
    from sealpod.ocicrypt.layers import DecryptionKeys

    keys = DecryptionKeys()
    for item in items:
        keys.add(item)
    return keys


def layer_decryption(manifest: Manifest, keys: DecryptionKeys | None) -> BlobTransform | None:
    """The pull's decrypting transform when the image has an encrypted layer or keys were given."""
    from sealpod.oci import mediatypes as mt

    if keys is None and not any(mt.is_encrypted(layer.media_type) for layer in manifest.layers):
        return None
    from sealpod.ocicrypt.layers import DecryptionKeys, LayerDecryption

    return LayerDecryption(manifest, keys if keys is not None else DecryptionKeys())


def unpack_limits(max_size: str | None, max_entries: int | None) -> TarLimits:
    """The per-layer bounds ``--max-size`` and ``--max-entries`` ask for (the defaults where not given)."""
    from sealpod.errors import UsageError
    from sealpod.oci.tarstream import TarLimits

    size = parse_size(max_size) if max_size else None
    if (size is not None and size <= 0) or (max_entries is not None and max_entries <= 0):
        raise UsageError("--max-size and --max-entries must be positive")
    return TarLimits().bounded(size, max_entries)
