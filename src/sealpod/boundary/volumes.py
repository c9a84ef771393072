"""A volume the host asks the enclave to mount into the workload's rootfs (``SOURCE:DESTINATION[:ro]``).

Written by the host side (``sealpod run -v``, the OCI bundle's bind mounts), read by the enclave, which mounts it
and unseals the sealed secrets in it (:mod:`sealpod.enclave.volumes`). Everything in it is chosen by the host.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from sealpod.errors import SealpodError

#: Where a container's own filesystems go: the enclave mounts these itself, a volume may not cover them.
RESERVED = ("/proc", "/sys", "/dev")


@dataclass(frozen=True)
class VolumeSpec:
    """A host path bound at ``destination`` in the workload's rootfs, read-only when ``read_only``."""

    source: str
    destination: str
    read_only: bool = False

    @classmethod
    def parse(cls, text: str) -> VolumeSpec:
        """``SOURCE:DESTINATION`` or ``SOURCE:DESTINATION:ro|rw``; both paths absolute, the destination clean
        and outside ``/proc``, ``/sys`` and ``/dev``."""
        parts = text.split(":")
        if len(parts) not in (2, 3) or not all(parts[:2]):
            raise SealpodError(f"volume {text!r} is not SOURCE:DESTINATION[:ro]")
        mode = parts[2] if len(parts) == 3 else "rw"
        if mode not in ("ro", "rw"):
            raise SealpodError(f"volume {text!r}: the mode is {mode!r}, not ro or rw")
        source, destination = parts[0], parts[1]
        for what, path in (("source", source), ("destination", destination)):
            if not path.startswith("/") or "\0" in path:
                raise SealpodError(f"volume {text!r}: the {what} must be an absolute path")
        clean = "/" + posixpath.normpath(destination).lstrip("/")
        if ".." in destination.split("/") or clean == "/":
            raise SealpodError(f"volume {text!r}: the destination must name a path below / without '..'")
        if any(clean == top or clean.startswith(top + "/") for top in RESERVED):
            raise SealpodError(f"volume {text!r}: {clean} is the enclave's own (/proc, /sys and /dev are)")
        return cls(source, clean, mode == "ro")

    def __str__(self) -> str:
        return f"{self.source}:{self.destination}:{'ro' if self.read_only else 'rw'}"
