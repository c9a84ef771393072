"""What the host asks the generic enclave to run: an image reference, the KBS address, options. Nothing secret.

Shared by the host side (:mod:`sealpod.runtime`), which writes it, and the enclave, which reads it.
"""

from __future__ import annotations

from sealpod.boundary import jsontext
from sealpod.errors import SealpodError

TYPE_CHECKING = False  # typing's own flag would import typing (~2 ms); mypy honours any flag of this name
if TYPE_CHECKING:
    from collections.abc import Callable

    from sealpod.boundary.volumes import VolumeSpec


class BootRequest:
    """What the host asks the enclave to run (immutable; :meth:`replace` makes a changed copy).

    ``command`` and ``env`` are what ``sealpod run`` asks for (a new Cmd, extra variables: refused unless the run policy
    allows them). ``argv`` and ``host_env`` are what a Kubernetes pod spec produced (a whole argv, every variable the
    kubelet adds): an ``argv`` equal to the image's own is not a change, and variables the run policy does not allow are
    dropped rather than refused. ``netns`` is a network namespace for the workload to join (the pod's); ``start_fd`` an
    inherited FIFO to wait on before starting the workload (the OCI runtime's create/start split); ``cgroup_path`` the
    container's cgroup (the enclave joins it, the workload's limits nest in it); ``init_data`` the pod's CoCo init-data
    (TOML; nothing secret: its digest is bound into the evidence); ``volumes`` host paths to bind into the rootfs,
    ``SOURCE:DESTINATION[:ro]`` (:class:`~sealpod.boundary.volumes.VolumeSpec`).

    A plain class rather than a dataclass: ``sealpod run``'s client imports this module, and the dataclasses module
    (with the inspect module it loads) would be ~6 ms of a pre-launched enclave's start.
    """

    __slots__ = (
        "allow_sim",
        "argv",
        "cgroup_path",
        "command",
        "env",
        "host_env",
        "image",
        "init_data",
        "kbs_ca_file",
        "kbs_url",
        "memory",
        "name",
        "netns",
        "pids",
        "policy_uri",
        "registry_tls_verify",
        "rootfs",
        "share_net",
        "start_fd",
        "volumes",
    )  # fmt: skip

    image: str
    kbs_url: str
    command: list[str]
    env: list[str]
    name: str
    share_net: bool
    allow_sim: bool
    registry_tls_verify: bool
    kbs_ca_file: str | None
    policy_uri: str | None
    rootfs: str
    memory: int | None
    pids: int | None
    argv: list[str]
    host_env: list[str]
    netns: str | None
    start_fd: int | None
    cgroup_path: str | None
    init_data: str | None
    volumes: list[str]

    def __init__(
        self,
        image: str,
        kbs_url: str,
        *,
        command: list[str] | None = None,
        env: list[str] | None = None,
        name: str = "sealpod",
        share_net: bool = False,
        allow_sim: bool = False,
        registry_tls_verify: bool = True,
        kbs_ca_file: str | None = None,
        policy_uri: str | None = None,
        rootfs: str = "gocryptfs",
        memory: int | None = None,
        pids: int | None = None,
        argv: list[str] | None = None,
        host_env: list[str] | None = None,
        netns: str | None = None,
        start_fd: int | None = None,
        cgroup_path: str | None = None,
        init_data: str | None = None,
        volumes: list[str] | None = None,
    ) -> None:
        values = dict(locals())
        del values["self"]
        for key in _LISTS:
            if values[key] is None:
                values[key] = []
        for key, value in values.items():
            object.__setattr__(self, key, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"a BootRequest is immutable (use replace() for a changed copy, not {name} = ...)")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("a BootRequest is immutable")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BootRequest):
            return NotImplemented
        return self.to_values() == other.to_values()

    __hash__ = None  # type: ignore[assignment]  # unhashable: its lists are mutable (a frozen dataclass fails on them too)

    def __repr__(self) -> str:
        return "BootRequest(" + ", ".join(f"{key}={value!r}" for key, value in self.to_values().items()) + ")"

    def replace(self, **changes: object) -> BootRequest:
        """A copy with ``changes`` (field names to values), checked as :meth:`from_values` checks a request."""
        return BootRequest.from_values({**self.to_values(), **changes})

    def to_json(self) -> str:
        """The request as the host passes it on the enclave's command line."""
        return jsontext.dumps(self.to_values())

    @classmethod
    def from_json(cls, text: str) -> BootRequest:
        """Parse a request, refusing unknown or missing fields and wrongly typed values by name."""
        try:
            values = jsontext.loads(text)
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
        for name, value in values.items():  # as given: a null list is refused, not taken for the default
            if not _TYPES[name](value):
                raise SealpodError(f"malformed boot request: {name} has the wrong type ({type(value).__name__})")
        request.volume_specs()
        return request

    def volume_specs(self) -> list[VolumeSpec]:
        """The volumes, parsed (a malformed one is refused by name)."""
        if not self.volumes:
            return []
        from sealpod.boundary.volumes import VolumeSpec  # a dataclass: only a request with volumes needs it

        return [VolumeSpec.parse(item) for item in self.volumes]

    def to_values(self) -> dict[str, object]:
        """The request as a JSON-ready object (what :meth:`from_values` reads)."""
        values = {key: getattr(self, key) for key in self.__slots__}
        for key in _LISTS:
            values[key] = list(values[key])  # a copy: the caller may change it, this request stays as it was
        return values


def _strings(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _optional(kind: type) -> Callable[[object], bool]:
    return lambda value: value is None or (isinstance(value, kind) and not isinstance(value, bool))


_LISTS = ("command", "env", "argv", "host_env", "volumes")

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
