"""The distribution client against a real docker-registry: push, pull, auth (basic, bearer), retries, errors."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sealpod._internal.http_client import HttpClient, Response
from sealpod.errors import AuthError, DigestMismatchError, NotFoundError, RegistryError
from sealpod.oci.layout import OciLayout
from sealpod.oci.localregistry import LocalRegistry
from sealpod.oci.models import Manifest, parse_manifest_or_index
from sealpod.oci.platform import parse_platform
from sealpod.oci.pull import pull
from sealpod.oci.reference import parse_reference
from sealpod.oci.registry import RegistryClient
from sealpod.oci.source import RegistryOptions, RegistryStore, resolve
from tests.conftest import REGISTRY_PASSWORD, REGISTRY_USER, need, run_tool, snapshot
from tests.helpers import E, image_from_tars, make_tar
from tests.oci.servers import TokenService, flaky_proxy, make_tls_pair

AMD64 = parse_platform("linux/amd64")
FILES = [E("app", "dir"), E("app/hello.txt", data=b"hello registry\n"), E("app/big", data=bytes(range(256)) * 40)]


def _layout_image(tmp_path: Path) -> Path:
    image_from_tars(tmp_path / "src", "v1", [make_tar(FILES), make_tar([E("app/second", data=b"2")])])
    return tmp_path / "src"


def _auth_json(path: Path, host: str, user: str = REGISTRY_USER, password: str = REGISTRY_PASSWORD) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    path.write_text(json.dumps({"auths": {host: {"auth": token}}}))
    return path


def _skopeo_push(src: Path, destination: str, *extra: str) -> None:
    run_tool(need("skopeo"), "copy", "--dest-tls-verify=false", *extra, f"oci:{src}:v1", f"docker://{destination}")


def _store(ref: str) -> RegistryStore:
    return RegistryStore(parse_reference(ref), RegistryOptions(tls_verify=False))


def test_push_monolithic_and_chunked_then_skopeo_and_sealpod_read_it(registry: LocalRegistry, tmp_path: Path) -> None:
    layout = OciLayout(_layout_image(tmp_path))
    fetched = layout.get_manifest("v1")
    manifest = parse_manifest_or_index(fetched.raw, None)
    assert isinstance(manifest, Manifest)
    repo = "push/test"
    with RegistryClient(registry.host, tls_verify=False) as client:
        blobs = [manifest.config, *manifest.layers]
        assert client.push_blob(repo, blobs[0], layout.blob_stream(blobs[0]))
        assert client.push_blob(repo, blobs[1], layout.blob_stream(blobs[1]), chunk_size=1000)
        assert client.push_blob(repo, blobs[2], layout.blob_stream(blobs[2]), chunk_size=64)
        assert not client.push_blob(repo, blobs[0], layout.blob_stream(blobs[0])), "already present: skipped"
        digest = client.push_manifest(repo, "v1", fetched.raw, manifest.media_type or "")
    assert digest == fetched.digest
    out = run_tool(need("skopeo"), "inspect", "--raw", "--tls-verify=false", f"docker://{registry.host}/{repo}:v1")
    assert out.stdout.encode() == fetched.raw
    run_tool(
        need("skopeo"),
        "copy",
        "--src-tls-verify=false",
        f"docker://{registry.host}/{repo}:v1",
        f"oci:{tmp_path / 'copied'}:v1",
    )
    for blob in blobs:
        assert (
            OciLayout(tmp_path / "copied").blob_path(blob.digest).read_bytes()
            == layout.blob_path(blob.digest).read_bytes()
        )
    for selector in ("v1", digest):
        target = tmp_path / f"rootfs-{selector[:6]}"
        pull(_store(f"{registry.host}/{repo}{'@' if ':' in selector else ':'}{selector}"), target, AMD64)
        assert (target / "app/hello.txt").read_bytes() == b"hello registry\n"
        assert (target / "app/second").read_bytes() == b"2"


def test_missing_manifest_and_repository(registry: LocalRegistry, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="not found"):
        pull(_store(f"{registry.host}/no/such:tag"), tmp_path / "r", AMD64)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("where", ["REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR", "docker-config"])
def test_basic_auth_from_each_credentials_file(
    where: str, auth_registry: LocalRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _layout_image(tmp_path)
    _skopeo_push(src, f"{auth_registry.host}/private/app:v1", f"--dest-creds={REGISTRY_USER}:{REGISTRY_PASSWORD}")
    if where == "REGISTRY_AUTH_FILE":
        monkeypatch.setenv("REGISTRY_AUTH_FILE", str(_auth_json(tmp_path / "explicit.json", auth_registry.host)))
    elif where == "XDG_RUNTIME_DIR":
        _auth_json(tmp_path / "run" / "containers" / "auth.json", auth_registry.host)
    else:
        _auth_json(tmp_path / "home" / ".docker" / "config.json", f"http://{auth_registry.host}")
    pull(_store(f"{auth_registry.host}/private/app:v1"), tmp_path / "rootfs", AMD64)
    assert (tmp_path / "rootfs/app/hello.txt").read_bytes() == b"hello registry\n"


def test_basic_auth_refusals(auth_registry: LocalRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(AuthError, match="requires a username and password") as err:
        resolve(_store(f"{auth_registry.host}/private/app:v1"), AMD64)
    assert err.value.hint is not None
    assert "auth.json" in err.value.hint or "config.json" in err.value.hint
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(_auth_json(tmp_path / "a.json", auth_registry.host, password="wrong")))
    with pytest.raises(AuthError, match="denied"):
        resolve(_store(f"{auth_registry.host}/private/app:v1"), AMD64)


@pytest.fixture
def token_registry(tmp_path: Path) -> Iterator[tuple[LocalRegistry, TokenService]]:
    need("docker-registry")
    service = TokenService(tmp_path, REGISTRY_USER, REGISTRY_PASSWORD).start()
    server = LocalRegistry(tmp_path / "token-registry", auth_yaml=service.registry_auth_yaml()).start()
    yield server, service
    server.stop()
    service.stop()


def test_bearer_token_auth(
    token_registry: tuple[LocalRegistry, TokenService], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, service = token_registry
    src = _layout_image(tmp_path)
    _skopeo_push(src, f"{server.host}/team/app:v1", f"--dest-creds={REGISTRY_USER}:{REGISTRY_PASSWORD}")
    with pytest.raises(AuthError, match="refused anonymous access"):
        resolve(_store(f"{server.host}/team/app:v1"), AMD64)
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(_auth_json(tmp_path / "a.json", server.host)))
    service.requests.clear()
    pull(_store(f"{server.host}/team/app:v1"), tmp_path / "rootfs", AMD64)
    assert (tmp_path / "rootfs/app/hello.txt").read_bytes() == b"hello registry\n"
    assert service.requests
    assert service.requests[0]["scope"] == ["repository:team/app:pull"]
    assert service.requests[0]["service"] == ["sealpod-test-registry"]


def test_retries_transient_errors(registry: LocalRegistry, tmp_path: Path) -> None:
    src = _layout_image(tmp_path)
    _skopeo_push(src, f"{registry.host}/flaky/app:v1")
    with flaky_proxy(registry.host, failures=3) as (host, answered):
        pull(_store(f"{host}/flaky/app:v1"), tmp_path / "rootfs", AMD64)
        assert answered[:3] == [503, 503, 503]
        assert (tmp_path / "rootfs/app/hello.txt").exists()
    with (
        flaky_proxy(registry.host, failures=50) as (host, _),
        RegistryClient(host, tls_verify=False, retries=1) as client,
        pytest.raises(RegistryError, match="503"),
    ):
        client.get_manifest("flaky/app", "v1")


def test_tampered_blob_in_registry_storage_is_refused(registry: LocalRegistry, tmp_path: Path) -> None:
    """One byte changed in a stored layer: refused by digest before the rootfs is committed."""
    src = _layout_image(tmp_path)
    ref = f"{registry.host}/tamper/app:v1"
    _skopeo_push(src, ref)
    image = resolve(_store(ref), AMD64)
    layer = image.manifest.layers[1]
    hexpart = layer.digest.split(":")[1]
    data = registry.storage / "data/docker/registry/v2/blobs/sha256" / hexpart[:2] / hexpart / "data"
    original = data.read_bytes()
    tampered = bytearray(original)
    tampered[len(tampered) // 2] ^= 0x01
    data.write_bytes(bytes(tampered))
    try:
        (tmp_path / "before").mkdir()
        before = snapshot(tmp_path)
        with pytest.raises(DigestMismatchError, match=f"digest mismatch: expected {layer.digest}"):
            pull(_store(ref), tmp_path / "rootfs", AMD64)
        assert snapshot(tmp_path) == before, "no rootfs and no staging directory may remain"
    finally:
        data.write_bytes(original)


def test_https_with_a_ca_file(tmp_path: Path) -> None:
    need("docker-registry")
    ca, cert, key = make_tls_pair(tmp_path)
    with LocalRegistry(tmp_path / "tls-registry", tls=(cert, key)) as server:
        src = _layout_image(tmp_path)
        _skopeo_push(src, f"{server.host}/secure/app:v1")
        ref = parse_reference(f"{server.host}/secure/app:v1")
        with pytest.raises(RegistryError, match="cannot reach https") as err:
            resolve(RegistryStore(ref, RegistryOptions()), AMD64)
        assert err.value.hint is not None
        assert "--ca-file" in err.value.hint
        pull(RegistryStore(ref, RegistryOptions(ca_file=str(ca))), tmp_path / "rootfs", AMD64)
        assert (tmp_path / "rootfs/app/hello.txt").exists()
        image = resolve(RegistryStore(ref, RegistryOptions(tls_verify=False)), AMD64)
        assert image.manifest.layers


def test_manifest_altered_in_registry_storage_is_refused(registry: LocalRegistry, tmp_path: Path) -> None:
    src = _layout_image(tmp_path)
    ref = f"{registry.host}/tamper/manifest:v1"
    _skopeo_push(src, ref)
    image = resolve(_store(ref), AMD64)
    hexpart = image.manifest_digest.split(":")[1]
    data = registry.storage / "data/docker/registry/v2/blobs/sha256" / hexpart[:2] / hexpart / "data"
    original = data.read_bytes()
    data.write_bytes(original + b" ")  # still valid JSON, another digest
    try:
        for selector in (f"{ref}", f"{registry.host}/tamper/manifest@{image.manifest_digest}"):
            with pytest.raises(DigestMismatchError, match="digest"):
                resolve(_store(selector), AMD64)
    finally:
        data.write_bytes(original)


def test_a_plain_http_registry_on_its_port_is_used_without_probing_it_twice(
    registry: LocalRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # https on the registry's port fails in the TLS handshake (it answered, in plain HTTP): that port speaks http,
    # and the first request goes there, not to another /v2/ probe
    _skopeo_push(_layout_image(tmp_path), f"{registry.host}/plain/app:v1")
    sent: list[str] = []
    original = HttpClient.request

    def recording(self: HttpClient, method: str, url: str, **kwargs: Any) -> Response:
        sent.append(f"{method} {url}")
        return original(self, method, url, **kwargs)

    monkeypatch.setattr(HttpClient, "request", recording)
    image = resolve(_store(f"{registry.host}/plain/app:v1"), AMD64)
    assert image.manifest.layers
    assert sent[:2] == [f"GET https://{registry.host}/v2/", f"GET http://{registry.host}/v2/plain/app/manifests/v1"]
    # a port where nothing listens is still named as unreachable over both
    with pytest.raises(RegistryError, match=r"cannot reach registry 127\.0\.0\.1:1 over https or http"):
        resolve(_store("127.0.0.1:1/plain/app:v1"), AMD64)
