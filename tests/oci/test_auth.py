"""Credentials lookup (containers-auth.json order and specificity) and WWW-Authenticate parsing."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from sealpod.errors import AuthError
from sealpod.oci.auth import Credentials, lookup_credentials, parse_challenge


def _entry(user: str, password: str) -> dict[str, str]:
    return {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_most_specific_key_wins_and_first_file_wins(tmp_path: Path) -> None:
    first = tmp_path / "first.json"
    second = tmp_path / "second.json"
    first.write_text(json.dumps({"auths": {"quay.io": _entry("host", "1"), "quay.io/org": _entry("org", "2")}}))
    second.write_text(json.dumps({"auths": {"quay.io/org/app": _entry("repo", "3"), "other.io": _entry("o", "4")}}))
    paths = [first, second]
    assert lookup_credentials("quay.io/org/app", paths) == Credentials("org", "2")
    assert lookup_credentials("quay.io/else/app", paths) == Credentials("host", "1")
    assert lookup_credentials("other.io/x", paths) == Credentials("o", "4")
    assert lookup_credentials("nowhere.io/x", paths) is None


def test_docker_hub_legacy_key_and_identity_token(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"auths": {"https://index.docker.io/v1/": {**_entry("u", "p"), "identitytoken": "T"}}}))
    assert lookup_credentials("docker.io/library/alpine", [path]) == Credentials("<token>", "T")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"auths": {"r.io": {"auth": "!!!"}}}), "not base64"),
        (json.dumps({"auths": {"r.io": {"auth": base64.b64encode(b"nocolon").decode()}}}), "user:password"),
        (json.dumps({"auths": {"r.io": "x"}}), "not an object"),
    ],
)
def test_malformed_auth_files_are_refused(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "auth.json"
    path.write_text(content)
    with pytest.raises(AuthError, match=message):
        lookup_credentials("r.io/app", [path])


def test_challenge_parsing() -> None:
    bearer = parse_challenge(
        'Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push"'
    )
    assert bearer is not None
    assert bearer.scheme == "bearer"
    assert bearer.params == {
        "realm": "https://auth.example/token",
        "service": "registry.example",
        "scope": "repository:a/b:pull,push",
    }
    basic = parse_challenge('Basic realm="x \\"quoted\\""')
    assert basic is not None
    assert basic.scheme == "basic"
    assert basic.params["realm"] == 'x "quoted"'
    assert parse_challenge("") is None
