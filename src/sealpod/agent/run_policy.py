"""The tenant's run policy: what the host may change about how the workload starts.

The host names the image and may ask for another command (``sealpod run IMAGE CMD``) or extra environment (``-e``).
Either could make a confidential workload print its secrets, so both are refused unless the tenant's run policy
(a KBS resource, fetched after attestation like everything else) allows them::

    {"allow_command": true, "allow_env": ["LOG_LEVEL", "PORT"],
     "cdh_api": true, "cdh_resources": ["kbs:///default/db/password"], "require_encrypted_layers": true}

``allow_env`` is ``true`` (any variable), ``false`` (none, the default) or the names that may be set. ``cdh_api``
switches the workload's CDH resource API on (the default, as in CoCo: the KBS's resource policy decides what it
releases) or off; ``cdh_resources`` restricts it to the listed resources. ``require_encrypted_layers`` refuses an
image with any layer that is not encrypted (a host that swaps the tenant's image for a plain one). ``allow_volumes``
says where the host may mount volumes: ``true`` (anywhere), ``false`` (nowhere) or the destinations (a volume at or
below one); by default only where the image has nothing (a missing path or an empty directory) and at the files the
node manages (``/etc/hosts``, ``/etc/hostname``, ``/etc/resolv.conf``), so that no volume can replace the image's
programs. ``max_size`` and ``max_entries`` bound what one layer may unpack to (bytes, entries; default 256 GiB and
1,000,000). No policy in the KBS means the defaults.
"""

from __future__ import annotations

from dataclasses import dataclass

from sealpod._internal.jsonio import load_object
from sealpod.errors import SealpodError
from sealpod.kbs.client.protocol import check_resource_path
from sealpod.oci.models import ImageConfig
from sealpod.oci.tarstream import TarLimits

DEFAULT_RUN_POLICY_URI = "kbs:///default/run-policy/test"
FIELDS = frozenset(
    {
        "allow_command",
        "allow_env",
        "allow_volumes",
        "cdh_api",
        "cdh_resources",
        "require_encrypted_layers",
        "max_size",
        "max_entries",
    }
)
#: The files the node manages in every container (containerd's CRI mounts them): a volume may cover the image's.
NODE_FILES = frozenset({"/etc/hosts", "/etc/hostname", "/etc/resolv.conf"})


class RunPolicyError(SealpodError):
    """The run policy is malformed, or refuses what the host asked for."""


@dataclass(frozen=True)
class RunPolicy:
    """What the tenant lets the host change."""

    allow_command: bool = False
    allow_env: bool | frozenset[str] = False
    cdh_api: bool = True
    #: The resource paths (``repository/type/tag``) the CDH API may answer; None: any the KBS releases.
    cdh_resources: frozenset[str] | None = None
    require_encrypted_layers: bool = False
    #: Where volumes may go: True anywhere, False nowhere, destinations, or None (where the image has nothing).
    allow_volumes: bool | frozenset[str] | None = None
    #: Most bytes one layer may unpack to, and most entries it may hold (None: the unpacker's defaults).
    max_size: int | None = None
    max_entries: int | None = None

    @classmethod
    def parse(cls, raw: bytes, where: str) -> RunPolicy:
        """Parse a policy, naming the field that is wrong."""
        data = load_object(raw, f"run policy {where}", 64 * 1024, RunPolicyError)
        unknown = set(data) - FIELDS
        if unknown:
            raise RunPolicyError(f"run policy {where} has unknown fields: {', '.join(sorted(unknown))}")
        command = _flag(data, "allow_command", False, where)
        env = data.get("allow_env", False)
        if isinstance(env, list) and all(isinstance(name, str) for name in env):
            env = frozenset(env)
        elif not isinstance(env, bool):
            raise RunPolicyError(f"run policy {where}: allow_env must be true, false or a list of names")
        resources = data.get("cdh_resources")
        if resources is not None:
            if not isinstance(resources, list) or not all(isinstance(item, str) for item in resources):
                raise RunPolicyError(f"run policy {where}: cdh_resources must be a list of kbs:/// resource paths")
            resources = frozenset(_resource_path(item, where) for item in resources)
        volumes = data.get("allow_volumes")
        if isinstance(volumes, list) and all(isinstance(item, str) and item.startswith("/") for item in volumes):
            volumes = frozenset(item.rstrip("/") or "/" for item in volumes)
        elif volumes is not None and not isinstance(volumes, bool):
            raise RunPolicyError(f"run policy {where}: allow_volumes must be true, false or a list of absolute paths")
        return cls(
            command,
            env,
            cdh_api=_flag(data, "cdh_api", True, where),
            cdh_resources=resources,
            require_encrypted_layers=_flag(data, "require_encrypted_layers", False, where),
            allow_volumes=volumes,
            max_size=_bound(data, "max_size", where),
            max_entries=_bound(data, "max_entries", where),
        )

    def unpack_limits(self) -> TarLimits:
        """The per-layer bounds of the pull (``max_size``, ``max_entries``; the unpacker's defaults otherwise)."""
        return TarLimits().bounded(self.max_size, self.max_entries)

    def allows_variable(self, name: str) -> bool:
        """Whether the host may set the variable ``name``."""
        return self.allow_env is True or (self.allow_env is not False and name in self.allow_env)

    def check(self, command: list[str], env: list[str], where: str) -> None:
        """Refuse a host-supplied command or environment the policy does not allow."""
        if command and not self.allow_command:
            raise RunPolicyError(
                "the host asked to replace the image's command, and the tenant's run policy does not allow it",
                hint=f'the tenant can allow it with {{"allow_command": true}} at {where}',
            )
        if not env or self.allow_env is True:
            return
        refused = [name for name in (item.partition("=")[0] for item in env) if not self.allows_variable(name)]
        if refused:
            raise RunPolicyError(
                f"the host asked to set {', '.join(refused)} in the environment, and the tenant's run policy "
                "does not allow it",
                hint=f'the tenant can list the names in "allow_env" at {where}',
            )

    def check_volume(self, destination: str, covers: bool, where: str) -> None:
        """Refuse a volume at ``destination`` the policy does not allow (``covers``: the image holds something
        there)."""
        allowed = self.allow_volumes
        if allowed is True:
            return
        if allowed is None:
            if not covers or destination in NODE_FILES:
                return
            reason = "it would cover what the image holds there, and the tenant's run policy does not allow that"
        elif allowed is False:
            reason = "the tenant's run policy allows no volumes"
        elif any(destination == path or destination.startswith(path.rstrip("/") + "/") for path in allowed):
            return
        else:
            reason = "the tenant's run policy does not list it in allow_volumes"
        raise RunPolicyError(
            f"the host asked for a volume at {destination}: {reason}",
            hint=f'the tenant can allow it with {{"allow_volumes": ["{destination}"]}} at {where}',
        )

    def pod_argv(self, argv: list[str], image_argv: list[str], where: str) -> list[str] | None:
        """A pod spec's whole command line: ``None`` when it is the image's own, else it if the policy allows it."""
        if not argv or argv == image_argv:
            return None
        if not self.allow_command:
            raise RunPolicyError(
                f"the pod spec replaces the image's command with {argv!r}, and the tenant's run policy does not "
                "allow it",
                hint=f'the tenant can allow it with {{"allow_command": true}} at {where}',
            )
        return argv

    def pod_env(self, env: list[str], image_env: list[str]) -> tuple[list[str], list[str]]:
        """Split a pod's variables into those the policy lets through and the names it drops (kubelet adds service
        variables to every container: dropping, not refusing, keeps ordinary pod specs working)."""
        kept: list[str] = []
        dropped: list[str] = []
        for item in env:
            if item in image_env:
                continue
            name = item.partition("=")[0]
            if self.allows_variable(name):
                kept.append(item)
            else:
                dropped.append(name)
        return kept, dropped


def image_argv(config: ImageConfig) -> list[str]:
    """The image's own Entrypoint followed by its Cmd."""
    container = config.config
    return [*(container.entrypoint or []), *(container.cmd or [])] if container else []


def _bound(data: dict[str, object], name: str, where: str) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise RunPolicyError(f"run policy {where}: {name} must be a positive integer")
    return value


def _flag(data: dict[str, object], name: str, default: bool, where: str) -> bool:
    value = data.get(name, default)
    if not isinstance(value, bool):
        raise RunPolicyError(f"run policy {where}: {name} must be true or false")
    return value


def _resource_path(item: str, where: str) -> str:
    """``repository/type/tag`` of ``kbs:///repository/type/tag`` (or of the bare path)."""
    path = item.removeprefix("kbs:///")
    parts = path.split("/")
    try:
        if len(parts) != 3:
            raise SealpodError("not repository/type/tag")
        return check_resource_path(*parts)
    except SealpodError as err:
        raise RunPolicyError(
            f"run policy {where}: cdh_resources entry {item!r} is not a resource path: {err}"
        ) from None


def check_encrypted_layers(policy: RunPolicy, layers: list[tuple[str, str]], image: str) -> None:
    """Refuse, when the policy requires encrypted layers, an image with a plain one (``layers``: media type and
    digest of each)."""
    if not policy.require_encrypted_layers:
        return
    plain = [digest for media_type, digest in layers if not media_type.endswith("+encrypted")]
    if plain:
        raise RunPolicyError(
            f"{image} has {len(plain)} unencrypted layer(s) ({plain[0]} first), and the tenant's run policy "
            "requires encrypted layers",
            hint="the host may have replaced the tenant's image; run the tenant's encrypted image",
        )
