"""Image references with docker's normalisation rules.

``alpine`` -> ``docker.io/library/alpine:latest``; ``localhost:5000/app@sha256:...`` keeps its port and digest.
The grammar is the one of the distribution project's ``reference`` package.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sealpod.errors import InvalidReferenceError

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
DOCKER_HUB_API_HOST = "registry-1.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
MAX_NAME_LENGTH = 255

_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|{_IPV6})(?::[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"

_DOMAIN_RE = re.compile(rf"^{_DOMAIN}$")
_PATH_RE = re.compile(rf"^{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*$")
_TAG_RE = re.compile(rf"^{_TAG}$")
_DIGEST_RE = re.compile(rf"^{_DIGEST}$")


@dataclass(frozen=True, slots=True)
class ImageReference:
    """A normalised, fully qualified image reference."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def repository(self) -> str:
        """``domain/path``, the name without tag or digest."""
        return f"{self.domain}/{self.path}"

    @property
    def registry_host(self) -> str:
        """The host[:port] to talk to (Docker Hub's API host differs from its name)."""
        return DOCKER_HUB_API_HOST if self.domain == DEFAULT_DOMAIN else self.domain

    @property
    def selector(self) -> str:
        """What to ask the registry for: the digest when there is one, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    def scopes(self) -> list[str]:
        """Configuration scopes from the most specific: ``repo@digest``, ``repo:tag``, the repository, each parent
        namespace, the host (as containers-policy.json and registries.d match them)."""
        out = []
        if self.digest:
            out.append(f"{self.repository}@{self.digest}")
        if self.tag:
            out.append(f"{self.repository}:{self.tag}")
        parts = self.repository.split("/")
        while parts:
            out.append("/".join(parts))
            parts.pop()
        return out

    def with_digest(self, digest: str) -> ImageReference:
        """The same name pinned to ``digest`` (the tag is kept for display)."""
        return ImageReference(self.domain, self.path, self.tag, digest)

    def with_tag(self, tag: str) -> ImageReference:
        """The same name with ``tag`` and no digest."""
        return ImageReference(self.domain, self.path, tag, None)

    def __str__(self) -> str:
        text = self.repository
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text

    def familiar(self) -> str:
        """The short form docker prints (``alpine:latest`` for ``docker.io/library/alpine:latest``)."""
        name = self.path
        name = name.removeprefix(OFFICIAL_REPO_PREFIX) if self.domain == DEFAULT_DOMAIN else f"{self.domain}/{name}"
        if self.tag:
            name += f":{self.tag}"
        if self.digest:
            name += f"@{self.digest}"
        return name


def _split_domain(name: str) -> tuple[str, str]:
    first, sep, rest = name.partition("/")
    if not sep or ("." not in first and ":" not in first and first != "localhost" and first.lower() == first):
        return DEFAULT_DOMAIN, name
    return first, rest


def parse_reference(text: str, *, default_tag: bool = True) -> ImageReference:
    """Parse and normalise ``text``; raise :class:`InvalidReferenceError` naming what is wrong.

    With ``default_tag`` a reference with neither tag nor digest gets ``latest``.
    """
    if not text or text != text.strip():
        raise InvalidReferenceError(
            f"invalid image reference {text!r}: empty or surrounded by whitespace",
            hint="write it as [REGISTRY[:PORT]/]REPOSITORY[:TAG][@DIGEST], e.g. docker.io/library/alpine:3.20",
        )
    remainder, _, digest = text.partition("@")
    if digest and not _DIGEST_RE.match(digest):
        raise InvalidReferenceError(
            f"invalid image reference {text!r}: {digest!r} is not a digest",
            hint="a digest looks like sha256:<64 hex digits>",
        )
    name, tag = remainder, None
    colon = remainder.rfind(":")
    if colon > remainder.rfind("/"):
        name, tag = remainder[:colon], remainder[colon + 1 :]
        if not _TAG_RE.match(tag):
            raise InvalidReferenceError(
                f"invalid image reference {text!r}: {tag!r} is not a valid tag",
                hint="a tag is 1 to 128 of [A-Za-z0-9_.-] and does not start with '.' or '-'",
            )
    domain, path = _split_domain(name)
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if not _DOMAIN_RE.match(domain):
        raise InvalidReferenceError(f"invalid image reference {text!r}: {domain!r} is not a valid registry host")
    if path.lower() != path:
        raise InvalidReferenceError(f"invalid image reference {text!r}: repository name {path!r} must be lowercase")
    if not _PATH_RE.match(path):
        raise InvalidReferenceError(
            f"invalid image reference {text!r}: {path!r} is not a valid repository path",
            hint="path components are lowercase letters and digits separated by '.', '_', '__' or '-'",
        )
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = OFFICIAL_REPO_PREFIX + path
    if len(f"{domain}/{path}") > MAX_NAME_LENGTH:
        raise InvalidReferenceError(
            f"invalid image reference {text!r}: the repository name is longer than {MAX_NAME_LENGTH} characters"
        )
    if tag is None and not digest and default_tag:
        tag = DEFAULT_TAG
    return ImageReference(domain, path, tag, digest or None)
