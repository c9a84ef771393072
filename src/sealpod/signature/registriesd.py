"""registries.d: where signatures live (``lookaside``, ``lookaside-staging``) and whether sigstore attachments are
used (``use-sigstore-attachments``), per docker scope, with containers/image's rules.

The directory is ``$HOME/.config/containers/registries.d`` if it exists, else ``/etc/containers/registries.d``. Only
the most specific scope's section applies; a scope may be defined once across all files. Without a configured
lookaside the built-in default is ``file:///var/lib/containers/sigstore`` (root) or
``file://$HOME/.local/share/containers/sigstore``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sealpod._internal.files import read_bounded
from sealpod.errors import PolicyError
from sealpod.oci.reference import ImageReference

SYSTEM_DIR = Path("/etc/containers/registries.d")
_SECTION_KEYS = {"lookaside", "lookaside-staging", "sigstore", "sigstore-staging", "use-sigstore-attachments"}

#: The largest registries.d file read.
MAX_CONFIG_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Section:
    """One scope's configuration."""

    lookaside: str | None = None
    lookaside_staging: str | None = None
    use_sigstore_attachments: bool = False


def default_dir() -> Path:
    """The directory containers/image reads."""
    user = Path.home() / ".config" / "containers" / "registries.d"
    return user if user.is_dir() else SYSTEM_DIR


def _section(value: Any, where: str) -> Section:
    if value is None:
        return Section()
    if not isinstance(value, dict):
        raise PolicyError(f"registries.d: {where} must be a mapping")
    unknown = sorted(set(value) - _SECTION_KEYS)
    if unknown:
        raise PolicyError(f"registries.d: {where} has unknown key {unknown[0]!r}")
    use = value.get("use-sigstore-attachments", False)
    if not isinstance(use, bool):
        raise PolicyError(f"registries.d: {where}.use-sigstore-attachments must be true or false")
    lookaside = value.get("lookaside", value.get("sigstore"))
    staging = value.get("lookaside-staging", value.get("sigstore-staging"))
    for name, item in (("lookaside", lookaside), ("lookaside-staging", staging)):
        if item is not None and not isinstance(item, str):
            raise PolicyError(f"registries.d: {where}.{name} must be a URL string")
    return Section(lookaside, staging, use)


@dataclass
class RegistriesD:
    """The merged configuration of a registries.d directory."""

    default: Section | None = None
    scopes: dict[str, Section] | None = None

    @classmethod
    def load(cls, directory: Path | None = None) -> RegistriesD:
        """Read every ``*.yaml`` file of the directory (a missing directory is an empty configuration)."""
        import yaml  # only when there is a configuration to read

        directory = directory or default_dir()
        config = cls(None, {})
        assert config.scopes is not None
        if not directory.is_dir():
            return config
        for path in sorted(directory.glob("*.yaml")):
            try:
                text = read_bounded(path, MAX_CONFIG_BYTES, "registries.d", PolicyError).decode("utf-8")
                data = yaml.safe_load(text) or {}
            except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError) as err:
                raise PolicyError(f"registries.d: cannot read {path}: {err}") from None
            if not isinstance(data, dict):
                raise PolicyError(f"registries.d: {path} must hold a mapping")
            if "default-docker" in data:
                if config.default is not None:
                    raise PolicyError(f"registries.d: default-docker is defined twice (again in {path})")
                config.default = _section(data["default-docker"], f"{path.name}: default-docker")
            docker = data.get("docker") or {}
            if not isinstance(docker, dict):
                raise PolicyError(f"registries.d: {path.name}: docker must be a mapping")
            for scope, section in docker.items():
                if scope in config.scopes:
                    raise PolicyError(f"registries.d: scope {scope!r} is defined twice (again in {path})")
                config.scopes[str(scope)] = _section(section, f"{path.name}: docker[{scope!r}]")
        return config

    def section_for(self, ref: ImageReference) -> Section:
        """The most specific section for ``ref``."""
        scopes = self.scopes or {}
        for candidate in ref.scopes():
            if candidate in scopes:
                return scopes[candidate]
        return self.default or Section()

    def lookaside_base(self, ref: ImageReference, *, write: bool) -> str:
        """The signature storage URL for ``ref``'s repository (``<base>/<repository path>``)."""
        section = self.section_for(ref)
        top = (section.lookaside_staging or section.lookaside) if write else section.lookaside
        if not top:
            if os.geteuid() == 0:
                top = "file:///var/lib/containers/sigstore"
            else:
                top = f"file://{Path.home() / '.local/share/containers/sigstore'}"
        return f"{top.rstrip('/')}/{ref.path}"


def lookaside_url(base: str, manifest_digest: str, index: int) -> str:
    """``<base>@sha256=<hex>/signature-<index+1>``."""
    algorithm, _, hexpart = manifest_digest.partition(":")
    return f"{base}@{algorithm}={hexpart}/signature-{index + 1}"
