"""Platforms (``os/arch[/variant]``): parsing, the host's own, and choosing a manifest from an index."""

from __future__ import annotations

import os

from sealpod.errors import ManifestError, UsageError
from sealpod.oci.models import Descriptor, Index, Platform

_ARCH_ALIASES = {
    "x86_64": "amd64",
    "x86-64": "amd64",
    "aarch64": "arm64",
    "armhf": "arm",
    "armel": "arm",
    "i386": "386",
    "i686": "386",
}


def _normalise(os_name: str, arch: str, variant: str | None) -> tuple[str, str, str | None]:
    arch = _ARCH_ALIASES.get(arch.lower(), arch.lower())
    if arch == "arm64" and variant in (None, "", "8", "v8"):
        variant = "v8"
    elif arch == "arm" and variant in (None, "", "7"):
        variant = "v7"
    elif variant:
        variant = variant.lower()
    return os_name.lower(), arch, variant or None


def parse_platform(text: str) -> Platform:
    """Parse ``os/arch[/variant]``, e.g. ``linux/amd64`` or ``linux/arm/v7``."""
    parts = text.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise UsageError(f"invalid platform {text!r}", hint="write it as OS/ARCH[/VARIANT], e.g. linux/amd64")
    os_name, arch, variant = _normalise(parts[0], parts[1], parts[2] if len(parts) == 3 else None)
    return Platform(os=os_name, architecture=arch, variant=variant)


def host_platform() -> Platform:
    """The platform of this machine (what ``platform.system()`` and ``platform.machine()`` say, from the kernel,
    without importing the platform module: ~1 ms of every pull and enclave start)."""
    uname = os.uname()
    os_name, arch, variant = _normalise(uname.sysname, uname.machine, None)
    return Platform(os=os_name, architecture=arch, variant=variant)


def matches(wanted: Platform, offered: Platform) -> bool:
    """Whether an index entry for ``offered`` can run as ``wanted`` (variant defaults applied on both sides)."""
    w = _normalise(wanted.os, wanted.architecture, wanted.variant)
    o = _normalise(offered.os, offered.architecture, offered.variant)
    if w[:2] != o[:2]:
        return False
    return w[2] is None or o[2] is None or w[2] == o[2]


def select_manifest(index: Index, wanted: Platform) -> Descriptor:
    """The first manifest in ``index`` for ``wanted``; an error listing what the index offers otherwise."""
    offered = [d for d in index.manifests if d.platform is not None]
    for descriptor in offered:
        assert descriptor.platform is not None
        if matches(wanted, descriptor.platform):
            return descriptor
    available = ", ".join(sorted({str(d.platform) for d in offered})) or "no platform-specific manifests"
    raise ManifestError(
        f"the image has no manifest for platform {wanted}",
        hint=f"it offers: {available}; choose one with --platform",
    )
