"""Policy evaluation, table-driven over every requirement type and signedIdentity kind, with real signatures
(signed with sealpod's code, stored as attachments in a real OCI layout) and the verdicts containers/image documents.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from sealpod.errors import PolicyError, SignatureError
from sealpod.oci.layout import OciLayout
from sealpod.oci.reference import parse_reference
from sealpod.oci.source import LayoutStore
from sealpod.signature import policy as policy_module
from sealpod.signature import sigstore
from sealpod.signature.payload import COSIGN_TYPE, make_payload
from sealpod.signature.policy import ImageUnderCheck, load_policy, parse_policy
from sealpod.signature.registriesd import RegistriesD, Section
from sealpod.signature.verifier import ImageSignatures

DIGEST = "sha256:" + "a" * 64
OTHER_DIGEST = "sha256:" + "b" * 64
PASS = b"pw"


def _signatures(
    tmp_path: Path, keys: dict[str, Any], image: str, signed: list[tuple[str, str, str]], attachments: bool = True
) -> ImageSignatures:
    """The image's signatures: each (key name, claimed reference, claimed digest), attached to DIGEST."""
    OciLayout(tmp_path / "sigs").init()
    store = LayoutStore(str(tmp_path / "sigs"), None)
    for key_name, claimed, claimed_digest in signed:
        payload = make_payload(COSIGN_TYPE, claimed, claimed_digest)
        sigstore.write_attachment(store, DIGEST, payload, sigstore.sign(keys[key_name], payload))
    registries = RegistriesD(Section(use_sigstore_attachments=attachments), {})
    return ImageSignatures(parse_reference(image), DIGEST, store, registries)


def _policy(requirement: dict[str, Any]) -> bytes:
    return json.dumps({"default": [requirement]}).encode()


def _sigstore_req(keys: dict[str, Any], identity: dict[str, Any] | None = None) -> dict[str, Any]:
    req: dict[str, Any] = {"type": "sigstoreSigned", "keyPath": str(keys["good.pub"])}
    if identity:
        req["signedIdentity"] = identity
    return req


IDENTITIES = [
    # (signedIdentity, image being pulled, identity the signature claims, accepted?)
    ({"type": "matchExact"}, "r.io/ns/app:v1", "r.io/ns/app:v1", True),
    ({"type": "matchExact"}, "r.io/ns/app:v1", "r.io/ns/app:v2", False),
    ({"type": "matchExact"}, f"r.io/ns/app@{DIGEST}", "r.io/ns/app:v1", False),
    ({"type": "matchExact"}, "r.io/ns/app:v1", "r.io/ns/app", False),
    (None, "r.io/ns/app:v1", "r.io/ns/app:v1", True),
    (None, "r.io/ns/app:v1", "r.io/ns/app:v2", False),
    (None, "r.io/ns/app:v1", "r.io/ns/app", False),
    (None, f"r.io/ns/app@{DIGEST}", "r.io/ns/app:anything", True),
    (None, f"r.io/ns/app@{DIGEST}", "r.io/ns/other:v1", False),
    ({"type": "matchRepoDigestOrExact"}, "r.io/ns/app:v1", "r.io/ns/app:v1", True),
    ({"type": "matchRepository"}, "r.io/ns/app:v1", "r.io/ns/app:v9", True),
    ({"type": "matchRepository"}, "r.io/ns/app:v1", "r.io/ns/app", True),
    ({"type": "matchRepository"}, "r.io/ns/app:v1", "r.io/ns/other:v1", False),
    ({"type": "matchRepository"}, "r.io/ns/app:v1", "not a reference", False),
    (
        {"type": "exactReference", "dockerReference": "r.io/release/app:1.0"},
        "mirror.io/x:y",
        "r.io/release/app:1.0",
        True,
    ),
    (
        {"type": "exactReference", "dockerReference": "r.io/release/app:1.0"},
        "r.io/release/app:1.0",
        "r.io/release/app:1.1",
        False,
    ),
    ({"type": "exactRepository", "dockerRepository": "r.io/release/app"}, "mirror.io/x:y", "r.io/release/app:7", True),
    (
        {"type": "exactRepository", "dockerRepository": "r.io/release/app"},
        "mirror.io/x:y",
        "r.io/release/other:7",
        False,
    ),
    (
        {"type": "remapIdentity", "prefix": "mirror.io/ns", "signedPrefix": "r.io/ns"},
        "mirror.io/ns/app:v1",
        "r.io/ns/app:v1",
        True,
    ),
    (
        {"type": "remapIdentity", "prefix": "mirror.io/ns", "signedPrefix": "r.io/ns"},
        "mirror.io/ns/app:v1",
        "r.io/ns/app:v2",
        False,
    ),
    (
        {"type": "remapIdentity", "prefix": "mirror.io/ns", "signedPrefix": "r.io/ns"},
        "mirror.io/nsx/app:v1",
        "r.io/nsx/app:v1",
        False,
    ),
    (
        {"type": "remapIdentity", "prefix": "mirror.io/ns", "signedPrefix": "r.io/ns"},
        "other.io/ns/app:v1",
        "other.io/ns/app:v1",
        True,
    ),
]


@pytest.mark.parametrize(("identity", "image", "claimed", "accepted"), IDENTITIES)
def test_signed_identity(
    identity: dict[str, Any] | None, image: str, claimed: str, accepted: bool, keys: dict[str, Any], tmp_path: Path
) -> None:
    signatures = _signatures(tmp_path, keys, image, [("good", claimed, DIGEST)])
    policy = parse_policy(_policy(_sigstore_req(keys, identity)))
    subject = ImageUnderCheck("docker", parse_reference(image), DIGEST)
    if accepted:
        assert policy.evaluate(subject, signatures) == "default"
    else:
        with pytest.raises(SignatureError, match="is not accepted by"):
            policy.evaluate(subject, signatures)


REQUIREMENTS = [
    # (requirement, signatures (key, claims), accepted?, message when refused)
    ({"type": "insecureAcceptAnything"}, [], True, ""),
    ({"type": "reject"}, [("good", "r.io/ns/app:v1", DIGEST)], False, "rejects"),
    ({"type": "signedBaseLayer", "baseLayerIdentity": {"type": "matchExact"}}, [], False, "not implemented"),
    ("sigstore", [("good", "r.io/ns/app:v1", DIGEST)], True, ""),
    ("sigstore", [], False, "has no sigstoreSigned signatures"),
    ("sigstore", [("other", "r.io/ns/app:v1", DIGEST)], False, "does not verify with the policy's keys"),
    ("sigstore", [("good", "r.io/ns/app:v1", OTHER_DIGEST)], False, f"signed manifest {OTHER_DIGEST}"),
    ("sigstore", [("other", "r.io/ns/app:v1", DIGEST), ("good", "r.io/ns/app:v1", DIGEST)], True, ""),
]


@pytest.mark.parametrize(("requirement", "signed", "accepted", "message"), REQUIREMENTS)
def test_requirements(
    requirement: Any,
    signed: list[tuple[str, str, str]],
    accepted: bool,
    message: str,
    keys: dict[str, Any],
    tmp_path: Path,
) -> None:
    req = _sigstore_req(keys) if requirement == "sigstore" else requirement
    signatures = _signatures(tmp_path, keys, "r.io/ns/app:v1", signed)
    subject = ImageUnderCheck("docker", parse_reference("r.io/ns/app:v1"), DIGEST)
    policy = parse_policy(_policy(req))
    if accepted:
        policy.evaluate(subject, signatures)
    else:
        with pytest.raises(SignatureError, match=message):
            policy.evaluate(subject, signatures)


def test_attachments_are_read_only_where_registries_d_says(keys: dict[str, Any], tmp_path: Path) -> None:
    signatures = _signatures(tmp_path, keys, "r.io/ns/app:v1", [("good", "r.io/ns/app:v1", DIGEST)], attachments=False)
    with pytest.raises(SignatureError, match="no sigstoreSigned signatures") as err:
        parse_policy(_policy(_sigstore_req(keys))).evaluate(
            ImageUnderCheck("docker", parse_reference("r.io/ns/app:v1"), DIGEST), signatures
        )
    assert err.value.hint is not None
    assert "use-sigstore-attachments" in err.value.hint


def test_every_requirement_of_the_scope_must_pass_and_the_most_specific_scope_wins(
    keys: dict[str, Any], tmp_path: Path
) -> None:
    accept, reject = {"type": "insecureAcceptAnything"}, {"type": "reject"}
    document = {
        "default": [reject],
        "transports": {
            "docker": {
                "": [reject],
                "r.io": [accept],
                "r.io/ns": [reject],
                "r.io/ns/app": [accept, _sigstore_req(keys)],
                "r.io/ns/app:pinned": [accept],
            }
        },
    }
    policy = parse_policy(json.dumps(document).encode())
    signatures = _signatures(tmp_path, keys, "r.io/ns/app:v1", [])

    def verdict(image: str) -> str:
        subject = ImageUnderCheck("docker", parse_reference(image), DIGEST)
        try:
            return policy.evaluate(subject, signatures)
        except SignatureError:
            return "refused"

    assert verdict("r.io/ns/app:pinned") == "transports.docker['r.io/ns/app:pinned']"
    assert verdict("r.io/ns/app:v1") == "refused"  # accept AND sigstoreSigned: no signature
    assert verdict("r.io/ns/other:v1") == "refused"  # r.io/ns rejects
    assert verdict("r.io/top:v1") == "transports.docker['r.io']"
    assert verdict("q.io/x:v1") == "refused"
    assert (
        policy.requirements_for(ImageUnderCheck("docker", parse_reference("q.io/x"), DIGEST))[0]
        == "transports.docker['']"
    )
    layout = parse_policy(json.dumps({"default": [reject], "transports": {"oci": {str(tmp_path): [accept]}}}).encode())
    assert (
        layout.evaluate(ImageUnderCheck("oci", None, DIGEST, path=str(tmp_path / "layout")), signatures)
        == f"transports.oci[{str(tmp_path)!r}]"
    )


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({}, "lacks 'default'"),
        ({"default": [], "extra": 1}, "unknown member 'extra'"),
        (
            {"default": [{"type": "acceptEverythingPlease"}]},
            "default\\[0\\].type 'acceptEverythingPlease' is not a known",
        ),
        ({"default": [{"type": "insecureAcceptAnything", "keyPath": "/x"}]}, "default\\[0\\] has unknown member"),
        ({"default": [{"type": "sigstoreSigned"}]}, "exactly one of"),
        ({"default": [{"type": "sigstoreSigned", "keyPath": "/a", "keyData": "eA=="}]}, "exactly one of"),
        ({"default": [{"type": "sigstoreSigned", "keyData": "!!"}]}, "keyData is not valid base64"),
        ({"default": [{"type": "signedBy", "keyType": "X509Certificates", "keyPath": "/k"}]}, "keyType"),
        (
            {"default": [{"type": "sigstoreSigned", "keyData": "eA==", "signedIdentity": {"type": "matchSomething"}}]},
            "signedIdentity.type 'matchSomething'",
        ),
        (
            {
                "default": [
                    {
                        "type": "sigstoreSigned",
                        "keyData": "eA==",
                        "signedIdentity": {"type": "exactReference", "dockerReference": "app:v1"},
                    }
                ]
            },
            "fully qualified",
        ),
        (
            {
                "default": [
                    {
                        "type": "sigstoreSigned",
                        "keyData": "eA==",
                        "signedIdentity": {"type": "exactRepository", "dockerRepository": "r.io/a:v1"},
                    }
                ]
            },
            "without tag or digest",
        ),
        (
            {"default": [], "transports": {"docker": {"r.io/a": {"type": "reject"}}}},
            "transports.docker\\['r.io/a'\\] must be a list",
        ),
        ({"default": [], "transports": {"docker": {"r.io/UPPER": []}}}, "fully qualified docker scope"),
        ({"default": [{"type": "sigstoreSigned", "keyPath": "kbs:///default/cosign-key/1"}]}, "kbs://"),
    ],
)
def test_malformed_policies_are_refused_naming_the_path(document: dict[str, Any], message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        parse_policy(json.dumps(document).encode())


def test_kbs_key_paths_resolve_through_the_getter(keys: dict[str, Any], tmp_path: Path) -> None:
    asked: list[str] = []

    def getter(uri: str) -> bytes:
        asked.append(uri)
        return Path(keys["good.pub"]).read_bytes()

    document = {"default": [{"type": "sigstoreSigned", "keyPath": "kbs:///default/cosign-key/1"}]}
    policy = parse_policy(json.dumps(document).encode(), getter=getter)
    assert asked == ["kbs:///default/cosign-key/1"]
    signatures = _signatures(tmp_path, keys, "r.io/ns/app:v1", [("good", "r.io/ns/app:v1", DIGEST)])
    policy.evaluate(ImageUnderCheck("docker", parse_reference("r.io/ns/app:v1"), DIGEST), signatures)


def test_key_data_and_missing_default_policy(
    keys: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = base64.b64encode(Path(keys["good.pub"]).read_bytes()).decode()
    policy = parse_policy(_policy({"type": "sigstoreSigned", "keyData": data}))
    signatures = _signatures(tmp_path, keys, "r.io/ns/app:v1", [("good", "r.io/ns/app:v1", DIGEST)])
    policy.evaluate(ImageUnderCheck("docker", parse_reference("r.io/ns/app:v1"), DIGEST), signatures)
    monkeypatch.setattr(policy_module, "DEFAULT_POLICY_PATH", tmp_path / "no-such-policy.json")
    with pytest.raises(PolicyError, match="no signature policy") as err:
        load_policy(None)
    assert err.value.hint is not None
    assert "insecureAcceptAnything" in err.value.hint
