"""What the host asks the generic enclave to run: an image reference, the KBS address, options. Nothing secret.

Shared by the host side (:mod:`sealpod.runtime`), which writes it, and the enclave, which reads it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from sealpod.errors import SealpodError


@dataclass(frozen=True)
class BootRequest:
    """What the host asks the enclave to run."""

    image: str
    kbs_url: str
    command: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)
    name: str = "sealpod"
    share_net: bool = False
    allow_sim: bool = False
    registry_tls_verify: bool = True
    kbs_ca_file: str | None = None
    policy_uri: str | None = None
    rootfs: str = "gocryptfs"
    memory: int | None = None
    pids: int | None = None

    def to_json(self) -> str:
        """The request as the host passes it on the enclave's command line."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> BootRequest:
        """Parse a request, refusing unknown or missing fields by name."""
        try:
            values = json.loads(text)
            return cls(**values)
        except (ValueError, TypeError) as err:
            raise SealpodError(f"malformed boot request: {err}") from None
