"""OCI and Docker v2 manifests, indexes and image configs, read strictly from JSON.

Known fields are checked strictly (no coercion) and a refusal names the field at fault. Unknown fields are ignored, as
the OCI image spec requires of consumers ("MUST ignore unknown properties"); they survive in the raw bytes, which are
what digests are computed over. The models are frozen dataclasses (:mod:`sealpod._internal.wire_model`): every pull
and every enclave reads them, and pydantic would cost each of those processes ~60 ms and ~12 MiB.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from sealpod._internal.jsonio import load_object
from sealpod._internal.wire_model import (
    Invalid,
    Path,
    WireField,
    WireModel,
    boolean,
    dict_of,
    integer,
    json_object,
    list_of,
    model,
    natural,
    nonempty_string,
    string,
    wire,
)
from sealpod.errors import ManifestError
from sealpod.oci import mediatypes as mt
from sealpod.oci.digest import validate_digest

MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_CONFIG_BYTES = 8 * 1024 * 1024


def _digest(value: Any, path: Path) -> str:
    try:
        return validate_digest(string(value, path))
    except ManifestError as err:
        raise Invalid(path, str(err)) from None


_strings = list_of(string)
_labels = dict_of(string)
_sets = dict_of(json_object)


def _schema_2(version: int, media_type: str | None, allowed: tuple[str, ...], kind: str) -> None:
    if version != 2:
        raise Invalid(("schemaVersion",), f"schemaVersion must be 2, not {version}")
    if media_type is not None and media_type not in allowed:
        raise Invalid(("mediaType",), f"{media_type!r} is not {kind} type")


@dataclass(frozen=True, slots=True)
class Platform(WireModel):
    """The platform an image in an index runs on."""

    architecture: str
    os: str
    os_version: str | None = None
    os_features: list[str] | None = None
    variant: str | None = None
    features: list[str] | None = None

    FIELDS: ClassVar[tuple[WireField, ...]] = (
        wire("architecture", string, required=True),
        wire("os", string, required=True),
        wire("os_version", string, "os.version"),
        wire("os_features", _strings, "os.features"),
        wire("variant", string),
        wire("features", _strings),
    )

    def __str__(self) -> str:
        text = f"{self.os}/{self.architecture}"
        return f"{text}/{self.variant}" if self.variant else text


@dataclass(frozen=True, slots=True)
class Descriptor(WireModel):
    """A content descriptor: what a blob is, its digest and size."""

    media_type: str
    digest: str
    size: int
    urls: list[str] | None = None
    annotations: dict[str, str] | None = None
    data: str | None = None
    platform: Platform | None = None
    artifact_type: str | None = None

    FIELDS: ClassVar[tuple[WireField, ...]] = (
        wire("media_type", nonempty_string, "mediaType", required=True),
        wire("digest", _digest, required=True),
        wire("size", natural, required=True),
        wire("urls", _strings),
        wire("annotations", _labels),
        wire("data", string),
        wire("platform", model(Platform)),
        wire("artifact_type", string, "artifactType"),
    )


@dataclass(frozen=True, slots=True)
class Manifest(WireModel):
    """An image manifest (OCI or Docker schema 2)."""

    schema_version: int
    config: Descriptor
    layers: list[Descriptor]
    media_type: str | None = None
    artifact_type: str | None = None
    subject: Descriptor | None = None
    annotations: dict[str, str] | None = None

    FIELDS: ClassVar[tuple[WireField, ...]] = (
        wire("schema_version", integer, "schemaVersion", required=True),
        wire("media_type", string, "mediaType"),
        wire("artifact_type", string, "artifactType"),
        wire("config", model(Descriptor), required=True),
        wire("layers", list_of(model(Descriptor)), required=True),
        wire("subject", model(Descriptor)),
        wire("annotations", _labels),
    )

    def check(self, path: Path) -> None:
        """schemaVersion 2 and, when given, a manifest media type."""
        _schema_2(self.schema_version, self.media_type, mt.MANIFEST_TYPES, "an image manifest")


@dataclass(frozen=True, slots=True)
class Index(WireModel):
    """An image index (OCI) or manifest list (Docker)."""

    schema_version: int
    manifests: list[Descriptor]
    media_type: str | None = None
    artifact_type: str | None = None
    subject: Descriptor | None = None
    annotations: dict[str, str] | None = None

    FIELDS: ClassVar[tuple[WireField, ...]] = (
        wire("schema_version", integer, "schemaVersion", required=True),
        wire("media_type", string, "mediaType"),
        wire("artifact_type", string, "artifactType"),
        wire("manifests", list_of(model(Descriptor)), required=True),
        wire("subject", model(Descriptor)),
        wire("annotations", _labels),
    )

    def check(self, path: Path) -> None:
        """schemaVersion 2 and, when given, an index media type."""
        _schema_2(self.schema_version, self.media_type, mt.INDEX_TYPES, "an index")


@dataclass(frozen=True, slots=True)
class ContainerConfig(WireModel):
    """The execution parameters of an image (``config`` in the image config)."""

    user: str | None = None
    exposed_ports: dict[str, dict[str, Any]] | None = None
    env: list[str] | None = None
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    volumes: dict[str, dict[str, Any]] | None = None
    working_dir: str | None = None
    labels: dict[str, str] | None = None
    stop_signal: str | None = None

    FIELDS: ClassVar[tuple[WireField, ...]] = (
        wire("user", string, "User"),
        wire("exposed_ports", _sets, "ExposedPorts"),
        wire("env", _strings, "Env"),
        wire("entrypoint", _strings, "Entrypoint"),
        wire("cmd", _strings, "Cmd"),
        wire("volumes", _sets, "Volumes"),
        wire("working_dir", string, "WorkingDir"),
        wire("labels", _labels, "Labels"),
        wire("stop_signal", string, "StopSignal"),
    )


@dataclass(frozen=True, slots=True)
class RootFS(WireModel):
    """The layers' uncompressed digests, in order."""

    type: str
    diff_ids: list[str]

    FIELDS: ClassVar[tuple[WireField, ...]] = (
        wire("type", string, required=True),
        wire("diff_ids", list_of(_digest), required=True),
    )

    def check(self, path: Path) -> None:
        """``type`` is ``layers``."""
        if self.type != "layers":
            raise Invalid((*path, "type"), f"rootfs.type must be 'layers', not {self.type!r}")


@dataclass(frozen=True, slots=True)
class HistoryEntry(WireModel):
    """One step of how the image was built."""

    created: str | None = None
    created_by: str | None = None
    author: str | None = None
    comment: str | None = None
    empty_layer: bool | None = None

    FIELDS: ClassVar[tuple[WireField, ...]] = (
        wire("created", string),
        wire("created_by", string),
        wire("author", string),
        wire("comment", string),
        wire("empty_layer", boolean),
    )


@dataclass(frozen=True, slots=True)
class ImageConfig(WireModel):
    """An image configuration (OCI or Docker)."""

    architecture: str
    os: str
    rootfs: RootFS
    created: str | None = None
    author: str | None = None
    os_version: str | None = None
    variant: str | None = None
    config: ContainerConfig | None = None
    history: list[HistoryEntry] | None = None

    FIELDS: ClassVar[tuple[WireField, ...]] = (
        wire("created", string),
        wire("author", string),
        wire("architecture", string, required=True),
        wire("os", string, required=True),
        wire("os_version", string, "os.version"),
        wire("variant", string),
        wire("config", model(ContainerConfig)),
        wire("rootfs", model(RootFS), required=True),
        wire("history", list_of(model(HistoryEntry))),
    )

    @property
    def platform(self) -> Platform:
        """The platform this config says the image is for."""
        return Platform(architecture=self.architecture, os=self.os, variant=self.variant)


_M = TypeVar("_M", bound=WireModel)


def parse_json(raw: bytes, what: str, limit: int = MAX_MANIFEST_BYTES) -> dict[str, Any]:
    """Decode a bounded JSON object, refusing oversize or malformed input with a message naming ``what``."""
    return load_object(raw, what, limit, ManifestError)


def parse_model(cls: type[_M], data: Any, what: str) -> _M:
    """Read decoded JSON as ``cls``; the error names the field at fault."""
    if not isinstance(data, dict):
        raise ManifestError(f"{what} must be a JSON object, not {type(data).__name__}")
    try:
        return cls.from_wire(data)
    except Invalid as err:
        raise ManifestError(f"malformed {what}: field {err.where()!r}: {err.message}") from None


def parse_manifest_or_index(raw: bytes, media_type: str | None, what: str = "manifest") -> Manifest | Index:
    """Parse a manifest or index, deciding by the media type (the served one, else the document's own)."""
    data = parse_json(raw, what)
    declared = data.get("mediaType")
    kind = declared if isinstance(declared, str) and declared else media_type
    if media_type and declared and media_type.split(";")[0].strip() != declared:
        raise ManifestError(
            f"{what} declares mediaType {declared!r} but was served as {media_type!r}",
            hint="a registry or layout that mixes these up cannot be trusted to serve the right content",
        )
    if kind == mt.DOCKER_MANIFEST_V1_SIGNED or data.get("schemaVersion") == 1:
        raise ManifestError(
            f"{what} is a Docker schema 1 manifest, which is deprecated and not supported",
            hint="re-push the image with a current tool (skopeo copy, docker push) to get a schema 2 manifest",
        )
    if kind in mt.INDEX_TYPES or (kind is None and "manifests" in data):
        return parse_model(Index, data, what.replace("manifest", "index"))
    if kind in mt.MANIFEST_TYPES or (kind is None and "layers" in data):
        return parse_model(Manifest, data, what)
    raise ManifestError(f"{what} has unsupported media type {kind!r}")


def parse_config(raw: bytes) -> ImageConfig:
    """Parse an image config blob."""
    return parse_model(ImageConfig, parse_json(raw, "image config", MAX_CONFIG_BYTES), "image config")
