"""containers-policy.json: parsing (strict; errors name the JSON path at fault), scopes, and requirements.

Scope lookup for ``docker``: the full reference, the repository, each parent namespace, the host[:port], then the
transport's ``""`` and the global ``default``; only the most specific list applies. For ``oci`` the scopes are the
layout directory (as containers/image: not its tag) and its parents. An ``oci`` image has no docker reference, so
only the ``exactReference`` and ``exactRepository`` identities can accept its signatures (as in containers/image).
Every requirement of the list must pass; a signature requirement passes when at least one signature satisfies it.
An unknown requirement type is a parse error, never an accept.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sealpod._internal.files import read_bounded
from sealpod._internal.jsonio import load_object
from sealpod.errors import InvalidReferenceError, PolicyError, SignatureError
from sealpod.oci.reference import ImageReference, parse_reference
from sealpod.signature.identity import KINDS, SignedIdentity

DEFAULT_POLICY_PATH = Path("/etc/containers/policy.json")
MAX_POLICY_BYTES = 4 * 1024 * 1024
#: The largest key file a policy may name (a GPG keyring of many keys stays well under it).
MAX_KEY_BYTES = 1024 * 1024
UNNAMED_IDENTITIES = "an image without a docker reference needs exactReference or exactRepository"

#: Resolves a ``kbs://`` keyPath to the key's bytes (the enclave passes the KBS client's getter).
ResourceGetter = Callable[[str], bytes]


class SignatureVerifier(Protocol):
    """What a signature requirement needs from the caller: the image's signatures, checked against keys."""

    def sigstore_claims(self, keys: list[bytes]) -> list[SignatureCheck]:
        """Every sigstore signature of the image, verified (or not) against any of ``keys``."""
        ...

    def gpg_claims(self, keyrings: list[bytes]) -> list[SignatureCheck]:
        """Every simple-signing (GPG) signature of the image, verified (or not) against the keyrings."""
        ...


@dataclass(frozen=True, slots=True)
class SignatureCheck:
    """One signature's outcome: its claims when the cryptography verified, else why not."""

    claimed_reference: str | None
    claimed_digest: str | None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ImageUnderCheck:
    """The image a policy is evaluated for."""

    transport: str
    reference: ImageReference | None
    manifest_digest: str
    path: str | None = None
    tag: str | None = None

    def describe(self) -> str:
        """How messages name the image."""
        if self.transport == "oci":
            return f"oci:{self.path}" + (f":{self.tag}" if self.tag else "")
        return f"docker://{self.reference}"


class Requirement:
    """A policy requirement."""

    type: str = ""

    def check(self, image: ImageUnderCheck, verifier: SignatureVerifier) -> None:
        """Return if the image satisfies the requirement; raise :class:`SignatureError` saying why not."""
        raise NotImplementedError


class InsecureAcceptAnything(Requirement):
    type = "insecureAcceptAnything"

    def check(self, image: ImageUnderCheck, verifier: SignatureVerifier) -> None:
        return


class Reject(Requirement):
    type = "reject"

    def check(self, image: ImageUnderCheck, verifier: SignatureVerifier) -> None:
        raise SignatureError(f"the policy rejects {image.describe()} outright ('reject')")


class SignedBaseLayer(Requirement):
    type = "signedBaseLayer"

    def check(self, image: ImageUnderCheck, verifier: SignatureVerifier) -> None:
        raise SignatureError("'signedBaseLayer' is not implemented (as in containers/image): the image is refused")


@dataclass
class _SignatureRequirement(Requirement):
    keys: list[bytes]
    identity: SignedIdentity
    source: str

    def _claims(self, verifier: SignatureVerifier) -> list[SignatureCheck]:
        raise NotImplementedError

    def check(self, image: ImageUnderCheck, verifier: SignatureVerifier) -> None:
        from sealpod.signature.identity import matches

        checks = self._claims(verifier)
        if not checks:
            raise SignatureError(
                f"{image.describe()} has no {self.type} signatures",
                hint="sign it (sealpod image sign), or check registries.d (lookaside, use-sigstore-attachments)",
            )
        reasons = []
        for check in checks:
            if check.error:
                reasons.append(check.error)
            elif check.claimed_digest != image.manifest_digest:
                reasons.append(f"signed manifest {check.claimed_digest} is not {image.manifest_digest}")
            elif check.claimed_reference is None or not matches(
                self.identity, image.reference, check.claimed_reference
            ):
                unnamed = image.reference is None and self.identity.kind not in ("exactReference", "exactRepository")
                reasons.append(
                    f"signed identity {check.claimed_reference!r} is not accepted by {self.identity.kind} "
                    f"for {image.describe()}" + (f" ({UNNAMED_IDENTITIES})" if unnamed else "")
                )
            else:
                return
        raise SignatureError(
            f"no {self.type} signature of {image.describe()} is accepted (keys from {self.source}): "
            + "; ".join(dict.fromkeys(reasons))
        )


class SigstoreSigned(_SignatureRequirement):
    type = "sigstoreSigned"

    def _claims(self, verifier: SignatureVerifier) -> list[SignatureCheck]:
        return verifier.sigstore_claims(self.keys)


class SignedBy(_SignatureRequirement):
    type = "signedBy"

    def _claims(self, verifier: SignatureVerifier) -> list[SignatureCheck]:
        return verifier.gpg_claims(self.keys)


@dataclass
class Policy:
    """A parsed policy."""

    default: list[Requirement]
    transports: dict[str, dict[str, list[Requirement]]] = field(default_factory=dict)

    def requirements_for(self, image: ImageUnderCheck) -> tuple[str, list[Requirement]]:
        """The most specific scope that applies, and its requirements."""
        scopes = self.transports.get(image.transport, {})
        for scope in _candidate_scopes(image):
            if scope in scopes:
                return f"transports.{image.transport}[{scope!r}]", scopes[scope]
        if "" in scopes:
            return f"transports.{image.transport}['']", scopes[""]
        return "default", self.default

    def evaluate(self, image: ImageUnderCheck, verifier: SignatureVerifier) -> str:
        """Raise :class:`SignatureError` unless every requirement of the applicable scope passes; returns the scope."""
        scope, requirements = self.requirements_for(image)
        if not requirements:
            raise SignatureError(f"the policy's {scope} has no requirements, which containers/image treats as reject")
        for requirement in requirements:
            requirement.check(image, verifier)
        return scope


def _candidate_scopes(image: ImageUnderCheck) -> list[str]:
    if image.transport == "oci":
        assert image.path is not None
        path = str(Path(image.path).absolute())
        out = [path]
        parent = Path(path)
        while parent != parent.parent:
            parent = parent.parent
            out.append(str(parent))
        return out
    assert image.reference is not None
    return image.reference.scopes()


# -- parsing ---------------------------------------------------------------------------------------------------


def _object(value: Any, where: str, allowed: set[str], required: set[str] = frozenset()) -> dict[str, Any]:  # type: ignore[assignment]
    if not isinstance(value, dict):
        raise PolicyError(f"policy: {where} must be a JSON object")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise PolicyError(f"policy: {where} has unknown member {unknown[0]!r}")
    missing = sorted(required - set(value))
    if missing:
        raise PolicyError(f"policy: {where} lacks {missing[0]!r}")
    return value


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise PolicyError(f"policy: {where} must be a non-empty string")
    return value


def _reference(value: Any, where: str, *, repository_only: bool = False) -> ImageReference:
    text = _string(value, where)
    try:
        ref = parse_reference(text, default_tag=False)
    except InvalidReferenceError as err:
        raise PolicyError(f"policy: {where}: {err}") from None
    if repository_only != (ref.tag is None and ref.digest is None):
        want = "a repository without tag or digest" if repository_only else "a reference with a tag or digest"
        raise PolicyError(f"policy: {where} must be {want}")
    if str(ref) != text and ref.repository != text:
        raise PolicyError(f"policy: {where} must be fully qualified ({str(ref)!r}), not {text!r}")
    return ref


def _identity(value: Any, where: str) -> SignedIdentity:
    if value is None:
        return SignedIdentity()
    data = _object(value, where, {"type", "dockerReference", "dockerRepository", "prefix", "signedPrefix"}, {"type"})
    kind = data["type"]
    if kind not in KINDS:
        raise PolicyError(f"policy: {where}.type {kind!r} is not a signedIdentity type ({', '.join(KINDS)})")
    allowed = {
        "exactReference": {"dockerReference"},
        "exactRepository": {"dockerRepository"},
        "remapIdentity": {"prefix", "signedPrefix"},
    }.get(kind, set())
    _object(data, where, {"type", *allowed}, {"type", *allowed})
    if kind == "exactReference":
        return SignedIdentity(kind, docker_reference=_reference(data["dockerReference"], f"{where}.dockerReference"))
    if kind == "exactRepository":
        ref = _reference(data["dockerRepository"], f"{where}.dockerRepository", repository_only=True)
        return SignedIdentity(kind, docker_repository=ref.repository)
    if kind == "remapIdentity":
        return SignedIdentity(
            kind,
            prefix=_string(data["prefix"], f"{where}.prefix"),
            signed_prefix=_string(data["signedPrefix"], f"{where}.signedPrefix"),
        )
    return SignedIdentity(kind)


def _b64(value: Any, where: str) -> bytes:
    try:
        return base64.b64decode(_string(value, where), validate=True)
    except (binascii.Error, ValueError):
        raise PolicyError(f"policy: {where} is not valid base64") from None


def _read_key(path: str, where: str, base: Path | None, getter: ResourceGetter | None) -> bytes:
    if path.startswith("kbs://"):
        if getter is None:
            raise PolicyError(f"policy: {where} is a kbs:// URI, which only the enclave (with a KBS) can resolve")
        return getter(path)
    full = Path(path) if Path(path).is_absolute() or base is None else base / path
    try:
        return read_bounded(full, MAX_KEY_BYTES, f"policy: {where}", PolicyError)
    except FileNotFoundError:
        raise PolicyError(f"policy: {where}: {full} does not exist") from None


def _requirement(value: Any, where: str, base: Path | None, getter: ResourceGetter | None) -> Requirement:
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise PolicyError(f"policy: {where} must be an object with a 'type'")
    kind = value["type"]
    if kind == "insecureAcceptAnything":
        _object(value, where, {"type"})
        return InsecureAcceptAnything()
    if kind == "reject":
        _object(value, where, {"type"})
        return Reject()
    if kind == "signedBaseLayer":
        _object(value, where, {"type", "baseLayerIdentity"}, {"type", "baseLayerIdentity"})
        return SignedBaseLayer()
    if kind == "signedBy":
        data = _object(
            value, where, {"type", "keyType", "keyPath", "keyPaths", "keyData", "signedIdentity"}, {"type", "keyType"}
        )
        if data["keyType"] != "GPGKeys":
            raise PolicyError(f"policy: {where}.keyType {data['keyType']!r} is not supported (GPGKeys is)")
        keys, source = _keys(data, where, base, getter, ("keyPath", "keyPaths", "keyData"))
        return SignedBy(keys, _identity(data.get("signedIdentity"), f"{where}.signedIdentity"), source)
    if kind == "sigstoreSigned":
        fields = {"type", "keyPath", "keyPaths", "keyData", "keyDatas", "signedIdentity"}
        data = _object(value, where, fields | {"fulcio", "rekorPublicKeyPath", "rekorPublicKeyData", "pki"}, {"type"})
        for unsupported in ("fulcio", "pki", "rekorPublicKeyPath", "rekorPublicKeyData"):
            if unsupported in data:
                raise PolicyError(
                    f"policy: {where}.{unsupported} is not supported by sealpod (keys only)",
                    hint="use keyPath/keyData with a cosign public key",
                )
        keys, source = _keys(data, where, base, getter, ("keyPath", "keyPaths", "keyData", "keyDatas"))
        return SigstoreSigned(keys, _identity(data.get("signedIdentity"), f"{where}.signedIdentity"), source)
    raise PolicyError(
        f"policy: {where}.type {kind!r} is not a known requirement",
        hint="known: insecureAcceptAnything, reject, signedBy, sigstoreSigned, signedBaseLayer",
    )


def _keys(
    data: dict[str, Any], where: str, base: Path | None, getter: ResourceGetter | None, names: tuple[str, ...]
) -> tuple[list[bytes], str]:
    present = [n for n in names if n in data]
    if len(present) != 1:
        raise PolicyError(f"policy: {where} needs exactly one of {', '.join(names)} (has {present or 'none'})")
    name = present[0]
    value = data[name]
    if name == "keyPath":
        return [_read_key(_string(value, f"{where}.keyPath"), f"{where}.keyPath", base, getter)], str(value)
    if name == "keyData":
        return [_b64(value, f"{where}.keyData")], "keyData"
    if not isinstance(value, list) or not value:
        raise PolicyError(f"policy: {where}.{name} must be a non-empty list")
    if name == "keyPaths":
        return (
            [
                _read_key(_string(v, f"{where}.keyPaths[{i}]"), f"{where}.keyPaths[{i}]", base, getter)
                for i, v in enumerate(value)
            ],
            ", ".join(map(str, value)),
        )
    return [_b64(v, f"{where}.{name}[{i}]") for i, v in enumerate(value)], name


def _requirements(value: Any, where: str, base: Path | None, getter: ResourceGetter | None) -> list[Requirement]:
    if not isinstance(value, list):
        raise PolicyError(f"policy: {where} must be a list of requirements")
    return [_requirement(item, f"{where}[{i}]", base, getter) for i, item in enumerate(value)]


def _check_docker_scope(scope: str, where: str) -> None:
    if scope == "":
        return
    if scope.startswith("*."):
        return
    try:
        ref = parse_reference(scope, default_tag=False)
    except InvalidReferenceError:
        ref = None
    host_only = "/" not in scope
    if not host_only and (ref is None or (str(ref) != scope and ref.repository != scope)):
        raise PolicyError(f"policy: {where}: {scope!r} is not a fully qualified docker scope")


def parse_policy(raw: bytes, *, base: Path | None = None, getter: ResourceGetter | None = None) -> Policy:
    """Parse policy bytes; relative key paths resolve against ``base``; ``kbs://`` key paths through ``getter``."""
    data = _object(
        load_object(raw, "policy", MAX_POLICY_BYTES, PolicyError),
        "the document",
        {"default", "transports"},
        {"default"},
    )
    default = _requirements(data["default"], "default", base, getter)
    transports: dict[str, dict[str, list[Requirement]]] = {}
    raw_transports = data.get("transports") or {}
    if not isinstance(raw_transports, dict):
        raise PolicyError("policy: transports must be an object")
    for transport, scopes in raw_transports.items():
        if not isinstance(scopes, dict):
            raise PolicyError(f"policy: transports.{transport} must be an object of scopes")
        parsed: dict[str, list[Requirement]] = {}
        for scope, reqs in scopes.items():
            where = f"transports.{transport}[{scope!r}]"
            if transport == "docker":
                _check_docker_scope(scope, where)
            parsed[scope] = _requirements(reqs, where, base, getter)
        transports[transport] = parsed
    return Policy(default, transports)


def load_policy(path: Path | None, *, getter: ResourceGetter | None = None) -> Policy:
    """Read ``path``, else /etc/containers/policy.json; refuse (with the way out) when there is none."""
    chosen = path or DEFAULT_POLICY_PATH
    try:
        raw = read_bounded(chosen, MAX_POLICY_BYTES, "policy", PolicyError)
    except FileNotFoundError:
        if path is not None:
            raise PolicyError(f"policy file {path} does not exist") from None
        raise PolicyError(
            f"no signature policy: {DEFAULT_POLICY_PATH} does not exist and --policy was not given",
            hint='to accept unsigned images explicitly, use a policy of {"default": [{"type": '
            '"insecureAcceptAnything"}]} (or --insecure-policy)',
        ) from None
    except OSError as err:
        raise PolicyError(f"cannot read policy {chosen}: {err.strerror}") from None
    try:
        return parse_policy(raw, base=chosen.parent, getter=getter)
    except PolicyError as err:
        raise PolicyError(f"{chosen}: {err}", hint=err.hint) from None
