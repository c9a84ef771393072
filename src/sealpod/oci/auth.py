"""Registry credentials from containers ``auth.json`` files and the ``WWW-Authenticate`` challenge grammar."""

from __future__ import annotations

import base64
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from sealpod.errors import AuthError

_DOCKER_HUB_KEYS = ("docker.io", "index.docker.io", "registry-1.docker.io", "https://index.docker.io/v1/")


@dataclass(frozen=True, slots=True)
class Credentials:
    """A username and password (or an identity token in ``password`` with username ``<token>``)."""

    username: str
    password: str


def auth_file_paths() -> list[Path]:
    """Where credentials are looked up, in order, as containers-auth.json(5) and docker describe."""
    paths: list[Path] = []
    explicit = os.environ.get("REGISTRY_AUTH_FILE")
    if explicit:
        paths.append(Path(explicit))
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        paths.append(Path(runtime) / "containers" / "auth.json")
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    paths.append(Path(config_home) / "containers" / "auth.json")
    docker_config = os.environ.get("DOCKER_CONFIG")
    paths.append(Path(docker_config) / "config.json" if docker_config else Path.home() / ".docker" / "config.json")
    return paths


def _decode_entry(entry: object, path: str, key: str) -> Credentials | None:
    if not isinstance(entry, dict):
        raise AuthError(f"{path}: auths[{key!r}] is not an object")
    token = entry.get("identitytoken")
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            user, sep, password = base64.b64decode(auth, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise AuthError(f"{path}: auths[{key!r}].auth is not base64 of 'user:password'") from None
        if not sep:
            raise AuthError(f"{path}: auths[{key!r}].auth does not contain 'user:password'")
        if isinstance(token, str) and token:
            return Credentials("<token>", token)
        return Credentials(user, password)
    if isinstance(token, str) and token:
        return Credentials("<token>", token)
    return None


def _candidate_keys(repository: str) -> list[str]:
    """``host/ns/repo``, ``host/ns``, ..., ``host``: the most specific key first."""
    keys = []
    parts = repository.split("/")
    while parts:
        keys.append("/".join(parts))
        parts.pop()
    if keys[-1] == "docker.io":
        keys.extend(_DOCKER_HUB_KEYS[1:])
    return keys


def credentials_in(raw: bytes, repository: str, source: str) -> Credentials | None:
    """Credentials for ``repository`` in one auth.json document (the most specific key wins)."""
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise AuthError(f"credentials file {source} is not valid JSON: {err}") from None
    auths = data.get("auths") if isinstance(data, dict) else None
    if not isinstance(auths, dict):
        return None
    normalised = {_normalise_key(k): (k, v) for k, v in auths.items()}
    for key in _candidate_keys(repository):
        if key in normalised:
            original, entry = normalised[key]
            found = _decode_entry(entry, source, original)
            if found:
                return found
    return None


def lookup_credentials(repository: str, paths: list[Path] | None = None) -> Credentials | None:
    """Credentials for ``repository`` (``domain/path``): the first file that has a matching key wins."""
    for path in paths if paths is not None else auth_file_paths():
        try:
            raw = path.read_bytes()
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        found = credentials_in(raw, repository, str(path))
        if found:
            return found
    return None


def _normalise_key(key: str) -> str:
    if key == "https://index.docker.io/v1/":
        return key
    key = re.sub(r"^https?://", "", key)
    return key.rstrip("/").removesuffix("/v1").removesuffix("/v2")


_CHALLENGE_RE = re.compile(r'\s*([A-Za-z][\w-]*)\s*(?:=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*)))?\s*,?')


@dataclass(frozen=True, slots=True)
class Challenge:
    """One parsed ``WWW-Authenticate`` challenge."""

    scheme: str
    params: dict[str, str]


def parse_challenge(header: str) -> Challenge | None:
    """Parse a ``Basic realm=...`` or ``Bearer realm=...,service=...,scope=...`` header value."""
    header = header.strip()
    if not header:
        return None
    scheme, _, rest = header.partition(" ")
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        match = _CHALLENGE_RE.match(rest, pos)
        if not match or match.end() == pos:
            break
        name, quoted, bare = match.groups()
        value = quoted if quoted is not None else bare or ""
        params[name.lower()] = re.sub(r"\\(.)", r"\1", value)
        pos = match.end()
    return Challenge(scheme.lower(), params)
