"""Encrypted images both ways with the real tools: skopeo 1.9.3 (JWE) and skopeo 1.18 (keyprovider: command and
gRPC), a real docker-registry, and umoci."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sealpod._internal.net import free_port
from sealpod.oci.localregistry import LocalRegistry
from tests.conftest import need, run_tool, snapshot
from tests.helpers import E, image_from_tars, make_tar

pytestmark = pytest.mark.interop
KEYS = Path(__file__).parent.parent / "data" / "ocicrypt" / "keys"
SEALPOD = str(Path(sys.executable).with_name("sealpod"))
LAYERS = [
    [E("app", "dir"), E("app/secret.txt", data=b"the plaintext\n" * 200), E("app/link", "symlink", link="secret.txt")],
    [E("app/.wh.secret.txt"), E("app/new.txt", data=b"second layer\n"), E("bin", "dir", mode=0o750)],
]


def sealpod(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [SEALPOD, *map(str, args)], capture_output=True, text=True, check=False, env={**os.environ, **(env or {})}
    )
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture
def plain(registry: LocalRegistry, tmp_path: Path) -> tuple[str, dict[str, tuple[object, ...]]]:
    """A plain two-layer image in the registry, and its tree as sealpod unpacks it."""
    image_from_tars(tmp_path / "plain", "v1", [make_tar(layer) for layer in LAYERS])
    ref = f"{registry.host}/enc/r{abs(hash(str(tmp_path))) % 10**12}:plain"
    run_tool(need("skopeo"), "copy", "--dest-tls-verify=false", f"oci:{tmp_path / 'plain'}:v1", f"docker://{ref}")
    sealpod("pull", ref, "--rootfs", tmp_path / "plain-rootfs", "--tls-verify=false")
    return ref, snapshot(tmp_path / "plain-rootfs")


def test_skopeo_193_encrypts_with_jwe_and_sealpod_decrypts(
    plain: tuple[str, dict[str, tuple[object, ...]]], tmp_path: Path
) -> None:
    ref, tree = plain
    encrypted = ref.replace(":plain", ":skopeo-jwe")
    run_tool(
        need("skopeo"),
        "copy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        f"--encryption-key=jwe:{KEYS / 'rsa-pub.pem'}",
        f"--encryption-key=jwe:{KEYS / 'ec-pub.pem'}",
        f"docker://{ref}",
        f"docker://{encrypted}",
    )
    info = json.loads(sealpod("inspect", encrypted, "--tls-verify=false", "--json").stdout)
    assert all(layer["mediaType"].endswith("+encrypted") for layer in info["layers"])
    for key in ("rsa-priv.pem", "ec-priv.pem"):
        target = tmp_path / f"rootfs-{key}"
        sealpod("pull", encrypted, "--rootfs", target, "--tls-verify=false", "--decryption-key", KEYS / key)
        assert snapshot(target) == tree


def test_sealpod_encrypts_and_skopeo_193_decrypts(
    plain: tuple[str, dict[str, tuple[object, ...]]], tmp_path: Path
) -> None:
    ref, _ = plain
    encrypted = ref.replace(":plain", ":sealpod-jwe")
    sealpod(
        "image",
        "encrypt",
        ref,
        encrypted,
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        "--recipient",
        f"jwe:{KEYS / 'rsa-pub.pem'}",
        "--recipient",
        f"jwe:{KEYS / 'ec-pub.pem'}",
    )
    skopeo, umoci = need("skopeo"), need("umoci")
    run_tool(skopeo, "copy", "--src-tls-verify=false", f"docker://{ref}", f"oci:{tmp_path / 'orig'}:v1")
    run_tool(umoci, "unpack", "--image", f"{tmp_path / 'orig'}:v1", tmp_path / "orig-bundle")
    for key in ("rsa-priv.pem", "ec-priv.pem"):
        out = tmp_path / f"dec-{key}"
        run_tool(
            skopeo,
            "copy",
            "--src-tls-verify=false",
            f"--decryption-key={KEYS / key}",
            f"docker://{encrypted}",
            f"oci:{out}:v1",
        )
        run_tool(umoci, "unpack", "--image", f"{out}:v1", tmp_path / f"bundle-{key}")
        assert snapshot(tmp_path / f"bundle-{key}" / "rootfs") == snapshot(tmp_path / "orig-bundle" / "rootfs")
    manifest = json.loads(run_tool(skopeo, "inspect", "--raw", "--tls-verify=false", f"docker://{encrypted}").stdout)
    original = json.loads(run_tool(skopeo, "inspect", "--raw", "--tls-verify=false", f"docker://{ref}").stdout)
    assert manifest["config"] == original["config"], "config (and diff_ids) unchanged"
    layer = manifest["layers"][0]
    assert layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip+encrypted"
    assert sorted(layer["annotations"]) == [
        "org.opencontainers.image.enc.keys.jwe",
        "org.opencontainers.image.enc.pubopts",
    ]


def test_encrypting_only_the_last_layer(plain: tuple[str, dict[str, tuple[object, ...]]], tmp_path: Path) -> None:
    ref, tree = plain
    encrypted = ref.replace(":plain", ":last-only")
    sealpod(
        "image",
        "encrypt",
        ref,
        encrypted,
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        "--recipient",
        f"jwe:{KEYS / 'ec-pub.pem'}",
        "--layer",
        "-1",
    )
    info = json.loads(sealpod("inspect", encrypted, "--tls-verify=false", "--json").stdout)
    assert [layer["mediaType"].endswith("+encrypted") for layer in info["layers"]] == [False, True]
    sealpod(
        "pull",
        encrypted,
        "--rootfs",
        tmp_path / "r",
        "--tls-verify=false",
        "--decryption-key",
        f"{KEYS / 'ec-priv-sec1.pem'}",
    )
    assert snapshot(tmp_path / "r") == tree


@pytest.fixture
def provider_config(tmp_path: Path) -> Iterator[tuple[dict[str, str], Path]]:
    """An ocicrypt keyprovider config naming sealpod's command provider and its gRPC server (started here)."""
    keys = tmp_path / "keks.json"
    port = free_port()
    config = tmp_path / "ocicrypt-keyprovider.json"
    config.write_text(
        json.dumps(
            {
                "key-providers": {
                    "attestation-agent": {"cmd": {"path": SEALPOD, "args": ["keyprovider", "--keys", str(keys)]}},
                    "sealpod-grpc": {"grpc": f"127.0.0.1:{port}"},
                }
            }
        )
    )
    server = subprocess.Popen(
        [SEALPOD, "keyprovider", "serve", "--grpc", f"127.0.0.1:{port}", "--keys", str(keys)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert server.stderr is not None
        assert "listening" in server.stderr.readline().decode()
        yield {"OCICRYPT_KEYPROVIDER_CONFIG": str(config)}, keys
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.mark.parametrize("provider", ["attestation-agent", "sealpod-grpc"])
def test_skopeo_118_and_sealpod_through_the_keyprovider(
    provider: str,
    plain: tuple[str, dict[str, tuple[object, ...]]],
    provider_config: tuple[dict[str, str], Path],
    trixie_tools: Path,
    tmp_path: Path,
) -> None:
    ref, tree = plain
    env, keks = provider_config
    skopeo118 = str(trixie_tools / "skopeo")
    by_skopeo = ref.replace(":plain", f":kp-skopeo-{provider}")
    subprocess.run(
        [
            skopeo118,
            "copy",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            f"--encryption-key=provider:{provider}:keyid=kbs:///default/image-kek/{provider}",
            f"docker://{ref}",
            f"docker://{by_skopeo}",
        ],
        check=True,
        capture_output=True,
        env={**os.environ, **env},
    )
    assert f"default/image-kek/{provider}" in json.loads(keks.read_text())
    sealpod(
        "pull",
        by_skopeo,
        "--rootfs",
        tmp_path / "r1",
        "--tls-verify=false",
        "--decryption-key",
        f"provider:{provider}",
        env=env,
    )
    assert snapshot(tmp_path / "r1") == tree
    sealpod(
        "pull", by_skopeo, "--rootfs", tmp_path / "r2", "--tls-verify=false", "--decryption-key", f"kek-store:{keks}"
    )
    assert snapshot(tmp_path / "r2") == tree

    by_sealpod = ref.replace(":plain", f":kp-sealpod-{provider}")
    sealpod(
        "image",
        "encrypt",
        ref,
        by_sealpod,
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        "--recipient",
        f"provider:{provider}:keyid=kbs:///default/image-kek/{provider}-2",
        env=env,
    )
    subprocess.run(
        [
            skopeo118,
            "copy",
            "--src-tls-verify=false",
            f"--decryption-key=provider:{provider}",
            f"docker://{by_sealpod}",
            f"oci:{tmp_path / 'dec'}:v1",
        ],
        check=True,
        capture_output=True,
        env={**os.environ, **env},
    )
    run_tool(need("umoci"), "unpack", "--image", f"{tmp_path / 'dec'}:v1", tmp_path / "bundle")
    sealpod("pull", f"oci:{tmp_path / 'dec'}:v1", "--rootfs", tmp_path / "r3")
    assert snapshot(tmp_path / "r3") == tree
