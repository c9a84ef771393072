"""OCI and Docker v2 manifests, indexes and image configs as strict pydantic models.

Known fields are checked strictly and a refusal names the field at fault. Unknown fields are ignored, as the OCI
image spec requires of consumers ("MUST ignore unknown properties"); they survive in the raw bytes, which are what
digests are computed over.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from sealpod._internal.jsonio import load_object
from sealpod.errors import ManifestError
from sealpod.oci import mediatypes as mt
from sealpod.oci.digest import validate_digest

MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_CONFIG_BYTES = 8 * 1024 * 1024


def _digest_field(value: str) -> str:
    try:
        return validate_digest(value)
    except ManifestError as err:
        raise ValueError(str(err)) from None


Digest = Annotated[str, AfterValidator(_digest_field)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True, strict=True)

    def to_json_dict(self) -> dict[str, Any]:
        """The wire form: camelCase names, unset optional fields left out."""
        return self.model_dump(by_alias=True, exclude_none=True)


class Platform(_Model):
    """The platform an image in an index runs on."""

    architecture: str
    os: str
    os_version: str | None = Field(None, alias="os.version")
    os_features: list[str] | None = Field(None, alias="os.features")
    variant: str | None = None
    features: list[str] | None = None

    def __str__(self) -> str:
        text = f"{self.os}/{self.architecture}"
        return f"{text}/{self.variant}" if self.variant else text


class Descriptor(_Model):
    """A content descriptor: what a blob is, its digest and size."""

    media_type: str = Field(alias="mediaType", min_length=1)
    digest: Digest
    size: int = Field(ge=0)
    urls: list[str] | None = None
    annotations: dict[str, str] | None = None
    data: str | None = None
    platform: Platform | None = None
    artifact_type: str | None = Field(None, alias="artifactType")


class Manifest(_Model):
    """An image manifest (OCI or Docker schema 2)."""

    schema_version: int = Field(alias="schemaVersion")
    media_type: str | None = Field(None, alias="mediaType")
    artifact_type: str | None = Field(None, alias="artifactType")
    config: Descriptor
    layers: list[Descriptor]
    subject: Descriptor | None = None
    annotations: dict[str, str] | None = None

    @model_validator(mode="after")
    def _check(self) -> Manifest:
        if self.schema_version != 2:
            raise ValueError(f"schemaVersion must be 2, not {self.schema_version}")
        if self.media_type is not None and self.media_type not in mt.MANIFEST_TYPES:
            raise ValueError(f"mediaType {self.media_type!r} is not an image manifest type")
        return self


class Index(_Model):
    """An image index (OCI) or manifest list (Docker)."""

    schema_version: int = Field(alias="schemaVersion")
    media_type: str | None = Field(None, alias="mediaType")
    artifact_type: str | None = Field(None, alias="artifactType")
    manifests: list[Descriptor]
    subject: Descriptor | None = None
    annotations: dict[str, str] | None = None

    @model_validator(mode="after")
    def _check(self) -> Index:
        if self.schema_version != 2:
            raise ValueError(f"schemaVersion must be 2, not {self.schema_version}")
        if self.media_type is not None and self.media_type not in mt.INDEX_TYPES:
            raise ValueError(f"mediaType {self.media_type!r} is not an index type")
        return self


class ContainerConfig(_Model):
    """The execution parameters of an image (``config`` in the image config)."""

    user: str | None = Field(None, alias="User")
    exposed_ports: dict[str, dict[str, Any]] | None = Field(None, alias="ExposedPorts")
    env: list[str] | None = Field(None, alias="Env")
    entrypoint: list[str] | None = Field(None, alias="Entrypoint")
    cmd: list[str] | None = Field(None, alias="Cmd")
    volumes: dict[str, dict[str, Any]] | None = Field(None, alias="Volumes")
    working_dir: str | None = Field(None, alias="WorkingDir")
    labels: dict[str, str] | None = Field(None, alias="Labels")
    stop_signal: str | None = Field(None, alias="StopSignal")


class RootFS(_Model):
    """The layers' uncompressed digests, in order."""

    type: str
    diff_ids: list[Digest]

    @model_validator(mode="after")
    def _check(self) -> RootFS:
        if self.type != "layers":
            raise ValueError(f"rootfs.type must be 'layers', not {self.type!r}")
        return self


class HistoryEntry(_Model):
    """One step of how the image was built."""

    created: str | None = None
    created_by: str | None = None
    author: str | None = None
    comment: str | None = None
    empty_layer: bool | None = None


class ImageConfig(_Model):
    """An image configuration (OCI or Docker)."""

    created: str | None = None
    author: str | None = None
    architecture: str
    os: str
    os_version: str | None = Field(None, alias="os.version")
    variant: str | None = None
    config: ContainerConfig | None = None
    rootfs: RootFS
    history: list[HistoryEntry] | None = None

    @property
    def platform(self) -> Platform:
        """The platform this config says the image is for."""
        return Platform(architecture=self.architecture, os=self.os, variant=self.variant)


_M = TypeVar("_M", bound=BaseModel)


def _describe(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "(top level)"
    more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"field {where!r}: {first['msg']}{more}"


def parse_json(raw: bytes, what: str, limit: int = MAX_MANIFEST_BYTES) -> dict[str, Any]:
    """Decode a bounded JSON object, refusing oversize or malformed input with a message naming ``what``."""
    return load_object(raw, what, limit, ManifestError)


def parse_model(model: type[_M], data: Any, what: str) -> _M:
    """Validate decoded JSON into ``model``; the error names the field at fault."""
    if not isinstance(data, dict):
        raise ManifestError(f"{what} must be a JSON object, not {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ManifestError(f"malformed {what}: {_describe(err)}") from None


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
