"""Manifests, indexes and configs parse strictly; malformed input is refused naming the field at fault."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import pytest

from sealpod.errors import ManifestError, UsageError
from sealpod.oci import mediatypes as mt
from sealpod.oci.models import Index, Manifest, parse_config, parse_manifest_or_index
from sealpod.oci.platform import host_platform, parse_platform, select_manifest

DATA = Path(__file__).parent.parent / "data"
D1, D2, D3 = ("sha256:" + c * 64 for c in "123")


def _manifest(**changes: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": mt.OCI_CONFIG, "digest": D1, "size": 10},
        "layers": [{"mediaType": mt.OCI_LAYER_GZIP, "digest": D2, "size": 20}],
    }
    doc.update(changes)
    return doc


def _parse(doc: object, media_type: str | None = None) -> Manifest | Index:
    return parse_manifest_or_index(json.dumps(doc).encode(), media_type)


def test_real_skopeo_manifests_parse() -> None:
    for name in ("enc-jwe-manifest.json", "gpg-v4-manifest.json"):
        manifest = _parse(json.loads((DATA / "ocicrypt" / name).read_text()))
        assert isinstance(manifest, Manifest)
        assert manifest.config.media_type == mt.OCI_CONFIG
        assert manifest.layers
    encrypted = _parse(json.loads((DATA / "ocicrypt/enc-jwe-manifest.json").read_text()))
    assert isinstance(encrypted, Manifest)
    assert mt.is_encrypted(encrypted.layers[0].media_type)
    assert mt.layer_compression(encrypted.layers[0].media_type) == "gzip"
    assert "org.opencontainers.image.enc.keys.jwe" in (encrypted.layers[0].annotations or {})


def test_unknown_fields_are_ignored_as_the_oci_spec_requires() -> None:
    manifest = _parse(_manifest(futureField={"x": 1}))
    assert isinstance(manifest, Manifest)


@pytest.mark.parametrize(
    ("doc", "served", "message"),
    [
        (_manifest(schemaVersion=1), None, "schema 1"),
        (_manifest(schemaVersion=3), None, "schemaVersion must be 2"),
        (
            _manifest(layers=[{"mediaType": "x", "digest": D2, "size": True}]),
            None,
            "'layers.0.size': must be an integer",
        ),
        (_manifest(config=None), None, "'config': must not be null"),
        (
            _manifest(layers=[{"mediaType": "", "digest": D2, "size": 1}]),
            None,
            "'layers.0.mediaType': must not be empty",
        ),
        (_manifest(annotations={"a": 1}), None, "'annotations.a'"),
        (_manifest(layers=[{"mediaType": "x", "digest": "sha256:abc", "size": 1}]), None, "'layers.0.digest'"),
        (_manifest(layers=[{"mediaType": "x", "digest": D2, "size": -1}]), None, "'layers.0.size'"),
        (_manifest(layers=[{"mediaType": "x", "digest": D2, "size": "1"}]), None, "'layers.0.size'"),
        (_manifest(layers=[{"digest": D2, "size": 1}]), None, "'layers.0.mediaType'"),
        (_manifest(config="nope"), None, "'config'"),
        (_manifest(layers=[{"mediaType": "x", "digest": "md5:" + "a" * 32, "size": 1}]), None, "unsupported digest"),
        (_manifest(), mt.OCI_INDEX, "served as"),
        ({"schemaVersion": 2, "mediaType": "application/x-unknown"}, None, "unsupported media type"),
        ([1, 2], None, "JSON object"),
        (
            {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [{"mediaType": "x"}]},
            None,
            "'manifests.0.digest'",
        ),
    ],
)
def test_malformed_documents_are_refused(doc: object, served: str | None, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        _parse(doc, served)


def test_not_json_and_oversize() -> None:
    with pytest.raises(ManifestError, match="not valid JSON"):
        parse_manifest_or_index(b"{not json", None)
    with pytest.raises(ManifestError, match="-byte bound"):
        parse_manifest_or_index(b" " * (5 * 1024 * 1024), None)


def test_config_parsing() -> None:
    raw = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Entrypoint": ["/app"], "Env": ["A=1"], "User": "1000:1000", "WorkingDir": "/w"},
            "rootfs": {"type": "layers", "diff_ids": [D1]},
            "container_config": {"ignored": True},
        }
    ).encode()
    config = parse_config(raw)
    assert config.config is not None
    assert config.config.entrypoint == ["/app"]
    assert config.config.user == "1000:1000"
    assert config.rootfs.diff_ids == [D1]
    with pytest.raises(ManifestError, match=r"rootfs\.type"):
        parse_config(
            json.dumps(
                {"architecture": "amd64", "os": "linux", "rootfs": {"type": "tarballs", "diff_ids": []}}
            ).encode()
        )
    with pytest.raises(ManifestError, match=r"'config\.Env\.0'"):
        parse_config(
            json.dumps(
                {
                    "architecture": "amd64",
                    "os": "linux",
                    "config": {"Env": [1]},
                    "rootfs": {"type": "layers", "diff_ids": []},
                }
            ).encode()
        )


def _index() -> Index:
    doc = {
        "schemaVersion": 2,
        "mediaType": mt.DOCKER_MANIFEST_LIST,
        "manifests": [
            {
                "mediaType": mt.DOCKER_MANIFEST,
                "digest": D1,
                "size": 1,
                "platform": {"architecture": "arm", "os": "linux", "variant": "v6"},
            },
            {
                "mediaType": mt.DOCKER_MANIFEST,
                "digest": D2,
                "size": 1,
                "platform": {"architecture": "arm64", "os": "linux"},
            },
            {
                "mediaType": mt.DOCKER_MANIFEST,
                "digest": D3,
                "size": 1,
                "platform": {"architecture": "amd64", "os": "linux"},
            },
        ],
    }
    index = _parse(doc)
    assert isinstance(index, Index)
    return index


@pytest.mark.parametrize(
    ("wanted", "digest"),
    [
        ("linux/amd64", D3),
        ("linux/arm64", D2),
        ("linux/arm64/v8", D2),
        ("linux/aarch64", D2),
        ("linux/arm/v6", D1),
        ("linux/x86_64", D3),
    ],
)
def test_platform_selection(wanted: str, digest: str) -> None:
    assert select_manifest(_index(), parse_platform(wanted)).digest == digest


def test_platform_selection_lists_what_is_offered() -> None:
    with pytest.raises(ManifestError, match="linux/s390x") as err:
        select_manifest(_index(), parse_platform("linux/s390x"))
    assert err.value.hint is not None
    assert "linux/amd64" in err.value.hint
    assert "linux/arm/v6" in err.value.hint
    with pytest.raises(ManifestError):
        select_manifest(_index(), parse_platform("linux/arm/v7"))


def test_platform_parsing() -> None:
    assert str(parse_platform("linux/arm")) == "linux/arm/v7"
    assert host_platform().os == "linux"
    # the host's platform is what the platform module says of this machine, normalised as an OCI platform
    assert host_platform() == parse_platform(f"{platform.system()}/{platform.machine()}")
    for bad in ("linux", "linux/", "a/b/c/d"):
        with pytest.raises(UsageError, match="invalid platform"):
            parse_platform(bad)


def test_wire_form_round_trips_with_json_keys_and_none_left_out() -> None:
    doc = _manifest(
        subject={
            "mediaType": mt.OCI_MANIFEST,
            "digest": D3,
            "size": 5,
            "platform": {"architecture": "arm64", "os": "linux", "os.version": "1"},
        },
        annotations={"k": "v"},
    )
    manifest = _parse(doc)
    assert isinstance(manifest, Manifest)
    assert manifest.subject is not None
    assert manifest.subject.platform is not None
    assert manifest.subject.platform.os_version == "1"
    assert manifest.to_json_dict() == doc
    dumped = manifest.layers[0].to_json_dict()
    dumped["size"] = 99  # a copy: the model itself is unchanged
    assert manifest.layers[0].size == 20
    assert "urls" not in dumped
    assert "annotations" not in dumped
