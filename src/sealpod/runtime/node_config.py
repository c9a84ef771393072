"""The node's settings for ``sealpod-runtime``: which KBS the enclaves attest to and how they pull.

Read from ``$SEALPOD_RUNTIME_CONFIG``, else ``/etc/sealpod/runtime.toml``. Nothing in it is secret: the keys come from
the KBS after attestation. Example::

    kbs_url = "https://kbs.example:8080"
    kbs_ca_file = "/etc/sealpod/kbs-ca.pem"   # optional: the KBS's CA
    allow_sim = false                         # true only on machines without SGX (proves nothing)
    registry_tls_verify = true
    rootfs = "gocryptfs"                      # or "memory"
    state_dir = "/var/lib/sealpod"
    runc = "/usr/sbin/runc"                   # ordinary containers and pause sandboxes run here
    use_pool = true                           # a container takes a pre-launched enclave when the node's
                                              # enclave pool (sealpod node enclave-pool) listens in state_dir
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from sealpod.errors import SealpodError
from sealpod.runtime.oci_names import DEFAULT_CONFIG, default_runc

DEFAULT_PATH = Path(DEFAULT_CONFIG)
_FIELDS = {
    "kbs_url": str,
    "kbs_ca_file": str,
    "allow_sim": bool,
    "registry_tls_verify": bool,
    "rootfs": str,
    "state_dir": str,
    "runc": str,
    "policy_uri": str,
    "use_pool": bool,
}


@dataclass(frozen=True)
class NodeConfig:
    """What every enclave on this node is started with."""

    kbs_url: str = ""
    kbs_ca_file: str | None = None
    allow_sim: bool = False
    registry_tls_verify: bool = True
    rootfs: str = "gocryptfs"
    state_dir: str | None = None
    runc: str = ""
    policy_uri: str | None = None
    use_pool: bool = True

    @classmethod
    def load(cls, path: Path | None = None) -> NodeConfig:
        """Read the node's config; a missing file gives the defaults (enough to pass ordinary containers to runc)."""
        path = path or Path(os.environ.get("SEALPOD_RUNTIME_CONFIG") or DEFAULT_PATH)
        try:
            values = tomllib.loads(path.read_text())
        except FileNotFoundError:
            values = {}
        except (OSError, tomllib.TOMLDecodeError) as err:
            raise SealpodError(f"cannot read the sealpod runtime config {path}: {err}") from None
        for key, value in values.items():
            kind = _FIELDS.get(key)
            if kind is None:
                raise SealpodError(f"the sealpod runtime config {path} has an unknown key {key!r}")
            if not isinstance(value, kind):
                raise SealpodError(f"the sealpod runtime config {path}: {key} must be a {kind.__name__}")
        config = cls(**values)
        if not config.runc:
            config = cls(**{**values, "runc": default_runc()})
        return config

    def require_kbs(self) -> str:
        """The KBS address, or an error that says where to set it."""
        if not self.kbs_url:
            where = os.environ.get("SEALPOD_RUNTIME_CONFIG") or DEFAULT_PATH
            raise SealpodError(f"no kbs_url in the sealpod runtime config {where}: the enclave has nowhere to attest")
        return self.kbs_url
