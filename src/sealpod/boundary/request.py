"""What the host asks the generic enclave to run: an image reference, the KBS address, options. Nothing secret.

Shared by the host side (:mod:`sealpod.runtime`), which writes it, and the enclave, which reads it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from sealpod.boundary.volumes import VolumeSpec
from sealpod.errors import SealpodError


@dataclass(frozen=True)
class BootRequest:
    """What the host asks the enclave to run.

    ``command`` and ``env`` are what ``sealpod run`` asks for (a new Cmd, extra variables: refused unless the run policy
    allows them). ``argv`` and ``host_env`` are what a Kubernetes pod spec produced (a whole argv, every variable the
    kubelet adds): an ``argv`` equal to the image's own is not a change, and variables the run policy does not allow are
    dropped rather than refused. ``netns`` is a network namespace for the workload to join (the pod's); ``start_fd`` an
    inherited FIFO to wait on before starting the workload (the OCI runtime's create/start split); ``cgroup_path`` the
    container's cgroup (the enclave joins it, the workload's limits nest in it); ``init_data`` the pod's CoCo init-data.
    """

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
    argv: list[str] = field(default_factory=list)
    host_env: list[str] = field(default_factory=list)
    netns: str | None = None
    start_fd: int | None = None
    cgroup_path: str | None = None
    #: The pod's init-data (CoCo's TOML; nothing secret): its digest is bound into the evidence.
    init_data: str | None = None
    #: Host paths to bind into the rootfs, ``SOURCE:DESTINATION[:ro]`` (:class:`~sealpod.boundary.volumes.VolumeSpec`).
    volumes: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        """The request as the host passes it on the enclave's command line."""
        return json.dumps(self.to_values())

    @classmethod
    def from_json(cls, text: str) -> BootRequest:
        """Parse a request, refusing unknown or missing fields and wrongly typed values by name."""
        try:
            values = json.loads(text)
        except ValueError as err:
            raise SealpodError(f"malformed boot request: {err}") from None
        return cls.from_values(values)

    @classmethod
    def from_values(cls, values: object) -> BootRequest:
        """A request from its decoded JSON object, checked as :meth:`from_json` checks it."""
        if not isinstance(values, dict):
            raise SealpodError(f"malformed boot request: a JSON {type(values).__name__}, not an object")
        try:
            request = cls(**values)
        except TypeError as err:
            raise SealpodError(f"malformed boot request: {err}") from None
        for name, value in asdict(request).items():
            if not _TYPES[name](value):
                raise SealpodError(f"malformed boot request: {name} has the wrong type ({type(value).__name__})")
        request.volume_specs()
        return request

    def volume_specs(self) -> list[VolumeSpec]:
        """The volumes, parsed (a malformed one is refused by name)."""
        return [VolumeSpec.parse(item) for item in self.volumes]

    def to_values(self) -> dict[str, object]:
        """The request as a JSON-ready object (what :meth:`from_values` reads)."""
        return asdict(self)


def _strings(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _optional(kind: type) -> Callable[[object], bool]:
    return lambda value: value is None or (isinstance(value, kind) and not isinstance(value, bool))


_TYPES: dict[str, Callable[[object], bool]] = {
    "image": lambda v: isinstance(v, str),
    "kbs_url": lambda v: isinstance(v, str),
    "command": _strings,
    "env": _strings,
    "name": lambda v: isinstance(v, str),
    "share_net": lambda v: isinstance(v, bool),
    "allow_sim": lambda v: isinstance(v, bool),
    "registry_tls_verify": lambda v: isinstance(v, bool),
    "kbs_ca_file": _optional(str),
    "policy_uri": _optional(str),
    "rootfs": lambda v: isinstance(v, str),
    "memory": _optional(int),
    "pids": _optional(int),
    "argv": _strings,
    "host_env": _strings,
    "netns": _optional(str),
    "start_fd": _optional(int),
    "cgroup_path": _optional(str),
    "init_data": _optional(str),
    "volumes": _strings,
}
