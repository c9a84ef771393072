"""Image references normalise as docker's reference package does, and malformed ones are refused by name."""

from __future__ import annotations

import pytest

from sealpod.errors import InvalidReferenceError
from sealpod.oci.reference import parse_reference

D = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "normalised", "registry_host", "path", "selector"),
    [
        ("alpine", "docker.io/library/alpine:latest", "registry-1.docker.io", "library/alpine", "latest"),
        ("alpine:3.20", "docker.io/library/alpine:3.20", "registry-1.docker.io", "library/alpine", "3.20"),
        ("user/app", "docker.io/user/app:latest", "registry-1.docker.io", "user/app", "latest"),
        ("docker.io/alpine", "docker.io/library/alpine:latest", "registry-1.docker.io", "library/alpine", "latest"),
        ("index.docker.io/user/app:1", "docker.io/user/app:1", "registry-1.docker.io", "user/app", "1"),
        ("localhost/app", "localhost/app:latest", "localhost", "app", "latest"),
        ("localhost:5000/app:v1", "localhost:5000/app:v1", "localhost:5000", "app", "v1"),
        ("127.0.0.1:5000/a/b/c:t", "127.0.0.1:5000/a/b/c:t", "127.0.0.1:5000", "a/b/c", "t"),
        ("quay.io/org/app@" + D, "quay.io/org/app@" + D, "quay.io", "org/app", D),
        ("quay.io/org/app:v2@" + D, "quay.io/org/app:v2@" + D, "quay.io", "org/app", D),
        (
            "example.com:443/a_b/c-d/e.f:x.Y-z_1",
            "example.com:443/a_b/c-d/e.f:x.Y-z_1",
            "example.com:443",
            "a_b/c-d/e.f",
            "x.Y-z_1",
        ),
        ("[::1]:5000/app:t", "[::1]:5000/app:t", "[::1]:5000", "app", "t"),
    ],
)
def test_normalisation(text: str, normalised: str, registry_host: str, path: str, selector: str) -> None:
    ref = parse_reference(text)
    assert str(ref) == normalised
    assert ref.registry_host == registry_host
    assert ref.path == path
    assert ref.selector == selector
    assert parse_reference(str(ref)) == ref


def test_familiar_form() -> None:
    assert parse_reference("alpine").familiar() == "alpine:latest"
    assert parse_reference("localhost:5000/app:v1").familiar() == "localhost:5000/app:v1"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        (" alpine", "whitespace"),
        ("Alpine", "lowercase"),
        ("docker.io/User/app", "lowercase"),
        ("alpine:-bad", "not a valid tag"),
        ("alpine:" + "t" * 129, "not a valid tag"),
        ("alpine@sha256:xyz", "not a digest"),
        ("alpine@sha256:abc", "not a digest"),
        ("app//x", "not a valid repository path"),
        ("app/-x", "not a valid repository path"),
        ("bad_host:5000/app", "not a valid registry host"),
        ("example.com/" + "a" * 260, "longer than 255"),
    ],
)
def test_malformed_references_are_refused(text: str, message: str) -> None:
    with pytest.raises(InvalidReferenceError, match=message):
        parse_reference(text)
