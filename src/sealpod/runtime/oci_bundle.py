"""What ``sealpod-runtime`` reads from an OCI bundle that containerd prepared: whether the container is a sealpod
image's, and what the pod spec asked for (argv, env, network namespace, hostname, limits).

The snapshotter (:mod:`sealpod.runtime.snapshotter`) leaves ``/.sealpod/image.json`` in the rootfs of an image whose
layers it kept from the host; the CRI annotations name the image. All of it comes from the host and is only a
request: the enclave verifies the image and applies the tenant's run policy.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sealpod._internal.cgroups import valid_container_path
from sealpod._internal.jsonio import load_object
from sealpod.boundary.volumes import RESERVED
from sealpod.errors import SealpodError
from sealpod.runtime.oci_names import CONTAINER_TYPE, MAX_CONFIG
from sealpod.runtime.snapshotter import read_marker

#: Where a pod carries its CoCo init-data (kata's two spellings); containerd passes them on as pod annotations.
INIT_DATA_ANNOTATIONS = (
    "io.katacontainers.config.runtime.cc_init_data",
    "io.katacontainers.config.hypervisor.cc_init_data",
)
#: The largest init-data passed to an enclave (it travels on the enclave's command line).
MAX_INIT_DATA = 64 * 1024
IMAGE_NAME = "io.kubernetes.cri.image-name"


@dataclass(frozen=True)
class Bundle:
    """The parts of an OCI bundle's ``config.json`` the sealpod runtime uses."""

    path: Path
    spec: dict[str, Any]

    @classmethod
    def load(cls, path: Path) -> Bundle:
        """Read ``config.json``, bounded, naming what is wrong."""
        config = path / "config.json"
        try:
            with config.open("rb") as handle:
                raw = handle.read(MAX_CONFIG + 1)
        except OSError as err:
            raise SealpodError(f"cannot read the bundle's config {config}: {err.strerror}") from None
        return cls(path, load_object(raw, f"the bundle's config {config}", MAX_CONFIG, SealpodError))

    def _section(self, name: str) -> dict[str, Any]:
        value = self.spec.get(name) or {}
        if not isinstance(value, dict):
            raise SealpodError(f"the bundle's config: {name} is not an object")
        return value

    @property
    def annotations(self) -> dict[str, str]:
        """The container's annotations (CRI puts the container type and image name here)."""
        return {k: v for k, v in self._section("annotations").items() if isinstance(v, str)}

    def init_data(self) -> str | None:
        """The pod's CoCo init-data (annotation ``io.katacontainers.config.runtime.cc_init_data``, or kata's
        ``...hypervisor.cc_init_data``): base64 of the TOML, gzipped or not, as the TOML text. Only decoded here:
        the enclave parses it and binds its digest into the evidence."""
        for name in INIT_DATA_ANNOTATIONS:
            value = self.annotations.get(name)
            if value:
                return decode_init_data(value, name)
        return None

    @property
    def rootfs(self) -> Path:
        """The root filesystem containerd mounted for the container."""
        root = self._section("root").get("path", "rootfs")
        return self.path / root if isinstance(root, str) else self.path / "rootfs"

    def sealpod_image(self) -> str | None:
        """The image reference when this is an application container of a sealpod image, else ``None``."""
        if self.annotations.get(CONTAINER_TYPE) == "sandbox":
            return None
        try:
            marker = read_marker(self.rootfs)
        except (OSError, ValueError) as err:
            raise SealpodError(f"the sealpod marker in {self.rootfs} is unreadable: {err}") from None
        if marker is None:
            return None
        named = self.annotations.get(IMAGE_NAME) or marker.image
        if not named:
            raise SealpodError("a sealpod image's container has no image name (CRI annotation or marker)")
        return named

    @property
    def process(self) -> dict[str, Any]:
        """The process section."""
        return self._section("process")

    def argv(self) -> list[str]:
        """The command line the pod spec (or the image config containerd read) gives."""
        args = self.process.get("args") or []
        return [str(a) for a in args] if isinstance(args, list) else []

    def env(self) -> list[str]:
        """Every variable containerd set (the image's, the pod's, the kubelet's)."""
        env = self.process.get("env") or []
        return [str(e) for e in env] if isinstance(env, list) else []

    def volumes(self) -> list[str]:
        """The bundle's bind mounts as ``SOURCE:DESTINATION[:ro]`` (the pod's volumes and the node's /etc/hosts,
        /etc/hostname, /etc/resolv.conf); the enclave makes /proc, /sys and /dev itself, so mounts there and of
        other kinds are left out."""
        out = []
        for mount in self.spec.get("mounts") or []:
            if not isinstance(mount, dict):
                continue
            source, destination = mount.get("source"), mount.get("destination")
            options = [o for o in mount.get("options") or [] if isinstance(o, str)]
            if not isinstance(source, str) or not isinstance(destination, str):
                continue
            if mount.get("type") not in (None, "bind", "none") or not {"bind", "rbind"} & set(options):
                continue
            if ":" in source or ":" in destination or not source.startswith("/"):
                raise SealpodError(f"the bundle's mount {source} -> {destination} cannot be passed to the enclave")
            if any(destination == top or destination.startswith(top + "/") for top in RESERVED):
                continue
            out.append(f"{source}:{destination}:{'ro' if 'ro' in options else 'rw'}")
        return out

    def terminal(self) -> bool:
        """Whether the container wants a tty."""
        return bool(self.process.get("terminal"))

    def hostname(self) -> str | None:
        """The pod's hostname."""
        name = self.spec.get("hostname")
        return name if isinstance(name, str) and name else None

    def network_namespace(self) -> str | None:
        """The path of the pod's network namespace, if the container joins one."""
        for ns in self._section("linux").get("namespaces") or []:
            if isinstance(ns, dict) and ns.get("type") == "network" and isinstance(ns.get("path"), str):
                return str(ns["path"]) or None
        return None

    def cgroups_path(self) -> str | None:
        """The container's cgroup as a cgroupfs path (systemd-driver ``slice:prefix:name`` paths are not used)."""
        path = self._section("linux").get("cgroupsPath")
        return path if isinstance(path, str) and valid_container_path(path) else None

    def memory_limit(self) -> int | None:
        """The memory limit in bytes, when the pod sets one."""
        memory = (self._section("linux").get("resources") or {}).get("memory") or {}
        limit = memory.get("limit") if isinstance(memory, dict) else None
        return limit if isinstance(limit, int) and limit > 0 else None

    def pids_limit(self) -> int | None:
        """The pids limit, when the pod sets one."""
        pids = (self._section("linux").get("resources") or {}).get("pids") or {}
        limit = pids.get("limit") if isinstance(pids, dict) else None
        return limit if isinstance(limit, int) and limit > 0 else None


def decode_init_data(value: str, where: str) -> str:
    """The TOML text of an init-data annotation (base64 of the text, or of its gzip), bounded before it is
    inflated."""
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SealpodError(f"the pod's init-data ({where}) is not base64") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(raw)) as unzipped:
                raw = unzipped.read(MAX_INIT_DATA + 1)
        except (OSError, EOFError) as err:
            raise SealpodError(f"the pod's init-data ({where}) is not valid gzip: {err}") from None
    if len(raw) > MAX_INIT_DATA:
        raise SealpodError(f"the pod's init-data ({where}) is over {MAX_INIT_DATA} bytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SealpodError(f"the pod's init-data ({where}) is not UTF-8 text") from None
