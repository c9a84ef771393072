"""Signatures both ways with the real tools: skopeo 1.18 and cosign 2.5 (sigstore), skopeo 1.9.3 and gpg (simple
signing), a real docker-registry; and `sealpod pull` enforcing the policy before any layer is fetched."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sealpod.oci.localregistry import LocalRegistry
from sealpod.oci.registry import RegistryClient
from sealpod.signature.sigstore import attachment_tag
from tests.conftest import need, run_tool
from tests.helpers import E, image_from_tars, make_tar
from tests.oci.servers import flaky_proxy

pytestmark = pytest.mark.interop
SEALPOD = str(Path(sys.executable).with_name("sealpod"))
PASS = "test-pass"


def sealpod(*args: str | Path, ok: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [SEALPOD, *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "COSIGN_PASSWORD": PASS, **(env or {})},
    )
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture
def setup(registry: LocalRegistry, tmp_path: Path) -> dict[str, Any]:
    """Two images in the registry (v1 and v2 of one repository), a registries.d, and a policy writer."""
    repo = f"{registry.host}/signed/r{abs(hash(str(tmp_path))) % 10**10}"
    for tag, content in (("v1", b"one"), ("v2", b"two")):
        image_from_tars(tmp_path / "src", tag, [make_tar([E("app", "dir"), E("app/version", data=content)])])
        run_tool(
            need("skopeo"), "copy", "--dest-tls-verify=false", f"oci:{tmp_path / 'src'}:{tag}", f"docker://{repo}:{tag}"
        )
    registries_d = tmp_path / "registries.d"
    registries_d.mkdir()
    (registries_d / "default.yaml").write_text(
        f"default-docker:\n  use-sigstore-attachments: true\n  lookaside: file://{tmp_path / 'lookaside'}\n"
    )

    def policy(requirement: dict[str, Any], name: str = "policy.json") -> Path:
        path = tmp_path / name
        path.write_text(
            json.dumps(
                {
                    "default": [{"type": "reject"}],
                    "transports": {
                        "docker": {registry.host: [requirement]},
                        "oci": {"": [{"type": "insecureAcceptAnything"}]},
                    },
                }
            )
        )
        return path

    return {"repo": repo, "registries_d": registries_d, "policy": policy, "tmp": tmp_path}


def _verify(setup: dict[str, Any], image: str, policy: Path) -> subprocess.CompletedProcess[str]:
    return sealpod(
        "image",
        "verify",
        image,
        "--policy",
        policy,
        "--registries-d",
        setup["registries_d"],
        "--tls-verify=false",
        ok=False,
    )


def _key_pairs(tmp: Path, trixie_tools: Path) -> dict[str, tuple[Path, Path]]:
    """Signing keys made by sealpod, by skopeo 1.18 and by cosign 2.5 (private, public)."""
    env = {**os.environ, "COSIGN_PASSWORD": PASS}
    sealpod("image", "keygen", "--output-key-prefix", tmp / "sealpod")
    pass_file = tmp / "pass"
    pass_file.write_text(PASS)
    subprocess.run(
        [
            str(trixie_tools / "skopeo"),
            "generate-sigstore-key",
            "--output-prefix",
            str(tmp / "skopeo"),
            "--passphrase-file",
            str(pass_file),
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [str(trixie_tools / "cosign"), "generate-key-pair", "--output-key-prefix", str(tmp / "cosign")],
        check=True,
        capture_output=True,
        env=env,
    )
    return {
        "sealpod": (tmp / "sealpod.key", tmp / "sealpod.pub"),
        "skopeo": (tmp / "skopeo.private", tmp / "skopeo.pub"),
        "cosign": (tmp / "cosign.key", tmp / "cosign.pub"),
    }


@pytest.mark.parametrize("maker", ["sealpod", "skopeo", "cosign"])
def test_skopeo_118_signs_with_keys_from_each_tool(maker: str, setup: dict[str, Any], trixie_tools: Path) -> None:
    tmp, repo = setup["tmp"], setup["repo"]
    private, public = _key_pairs(tmp, trixie_tools)[maker]
    pass_file = tmp / "pass"
    subprocess.run(
        [
            str(trixie_tools / "skopeo"),
            "copy",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            "--registries.d",
            str(setup["registries_d"]),
            f"--sign-by-sigstore-private-key={private}",
            f"--sign-passphrase-file={pass_file}",
            f"docker://{repo}:v1",
            f"docker://{repo}:v1",
        ],
        check=True,
        capture_output=True,
    )
    for identity in (
        {"type": "matchRepoDigestOrExact"},
        {"type": "matchRepository"},
        {"type": "remapIdentity", "prefix": "mirror.example/signed", "signedPrefix": repo.rsplit("/", 1)[0]},
    ):
        policy = setup["policy"]({"type": "sigstoreSigned", "keyPath": str(public), "signedIdentity": identity})
        proc = _verify(setup, f"{repo}:v1", policy)
        assert proc.returncode == 0, (identity, proc.stderr)
    good = setup["policy"]({"type": "sigstoreSigned", "keyPath": str(public)})
    wrong = setup["policy"](
        {"type": "sigstoreSigned", "keyPath": str(tmp / ("cosign.pub" if maker != "cosign" else "sealpod.pub"))},
        "wrong.json",
    )
    refused = _verify(setup, f"{repo}:v1", wrong)
    assert refused.returncode == 1
    assert "does not verify with the policy's keys" in refused.stderr
    missing = _verify(setup, f"{repo}:v2", good)
    assert missing.returncode == 1
    assert "has no sigstoreSigned signatures" in missing.stderr
    # the same manifest under another tag: the signature names v1, so matchRepoDigestOrExact refuses
    run_tool(
        need("skopeo"),
        "copy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        f"docker://{repo}:v1",
        f"docker://{repo}:v1-copy",
    )
    another_tag = _verify(setup, f"{repo}:v1-copy", good)
    assert another_tag.returncode == 1
    assert "is not accepted by matchRepoDigestOrExact" in another_tag.stderr
    # v1's signatures replayed onto v2's digest: they sign another manifest
    host, path = repo.split("/", 1)
    with RegistryClient(host, tls_verify=False) as client:
        v1, v2 = client.get_manifest(path, "v1").digest, client.get_manifest(path, "v2").digest
        attachment = client.get_manifest(path, attachment_tag(v1))
        client.push_manifest(path, attachment_tag(v2), attachment.raw, attachment.media_type or "")
    replayed = _verify(
        setup,
        f"{repo}:v2",
        setup["policy"](
            {"type": "sigstoreSigned", "keyPath": str(public), "signedIdentity": {"type": "matchRepository"}}, "r.json"
        ),
    )
    assert replayed.returncode == 1
    assert f"signed manifest {v1} is not {v2}" in replayed.stderr


def test_sealpod_signs_and_skopeo_118_and_cosign_accept(setup: dict[str, Any], trixie_tools: Path) -> None:
    tmp, repo = setup["tmp"], setup["repo"]
    sealpod("image", "keygen", "--output-key-prefix", tmp / "k")
    sealpod("image", "sign", f"{repo}:v1", "--key", tmp / "k.key", "--tls-verify=false")
    policy = setup["policy"]({"type": "sigstoreSigned", "keyPath": str(tmp / "k.pub")})
    subprocess.run(
        [
            str(trixie_tools / "skopeo"),
            "--policy",
            str(policy),
            "--registries.d",
            str(setup["registries_d"]),
            "copy",
            "--src-tls-verify=false",
            "--remove-signatures",
            f"docker://{repo}:v1",
            f"oci:{tmp / 'out'}:v1",
        ],
        check=True,
        capture_output=True,
    )
    refused = subprocess.run(
        [
            str(trixie_tools / "skopeo"),
            "--policy",
            str(policy),
            "--registries.d",
            str(setup["registries_d"]),
            "copy",
            "--src-tls-verify=false",
            "--remove-signatures",
            f"docker://{repo}:v2",
            f"oci:{tmp / 'out2'}:v2",
        ],
        capture_output=True,
        text=True,
    )
    assert refused.returncode != 0
    subprocess.run(
        [
            str(trixie_tools / "cosign"),
            "verify",
            "--key",
            str(tmp / "k.pub"),
            "--insecure-ignore-tlog=true",
            "--allow-http-registry",
            f"{repo}:v1",
        ],
        check=True,
        capture_output=True,
    )


def test_cosign_signs_and_only_match_repository_accepts(setup: dict[str, Any], trixie_tools: Path) -> None:
    tmp, repo = setup["tmp"], setup["repo"]
    env = {**os.environ, "COSIGN_PASSWORD": PASS}
    subprocess.run(
        [str(trixie_tools / "cosign"), "generate-key-pair", "--output-key-prefix", str(tmp / "c")],
        check=True,
        capture_output=True,
        env=env,
    )
    subprocess.run(
        [
            str(trixie_tools / "cosign"),
            "sign",
            "--key",
            str(tmp / "c.key"),
            "--tlog-upload=false",
            "--allow-http-registry",
            "-y",
            f"{repo}:v1",
        ],
        check=True,
        capture_output=True,
        env=env,
    )
    accept = setup["policy"](
        {"type": "sigstoreSigned", "keyPath": str(tmp / "c.pub"), "signedIdentity": {"type": "matchRepository"}}
    )
    assert _verify(setup, f"{repo}:v1", accept).returncode == 0
    exact = setup["policy"](
        {"type": "sigstoreSigned", "keyPath": str(tmp / "c.pub"), "signedIdentity": {"type": "matchExact"}},
        "exact.json",
    )
    refused = _verify(setup, f"{repo}:v1", exact)
    assert refused.returncode == 1
    assert "is not accepted by matchExact" in refused.stderr


@pytest.fixture
def gpg_key(tmp_path: Path) -> Iterator[tuple[Path, str, Path]]:
    """A throw-away GnuPG home with one signing key: (home, fingerprint, exported public keyring); the gpg-agent
    that gpg starts for it is stopped afterwards."""
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}
    subprocess.run(
        [
            "gpg",
            "--batch",
            "--passphrase",
            "",
            "--quick-gen-key",
            "sealpod test <t@example.com>",
            "ed25519",
            "sign",
            "never",
        ],
        check=True,
        capture_output=True,
        env=env,
    )
    listing = subprocess.run(
        ["gpg", "--list-keys", "--with-colons"], check=True, capture_output=True, text=True, env=env
    ).stdout
    fingerprint = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr"))
    keyring = tmp_path / "pub.gpg"
    keyring.write_bytes(
        subprocess.run(["gpg", "--export", fingerprint], check=True, capture_output=True, env=env).stdout
    )
    try:
        yield home, fingerprint, keyring
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], capture_output=True, check=False)


def test_gpg_both_ways(setup: dict[str, Any], gpg_key: tuple[Path, str, Path]) -> None:
    tmp, repo = setup["tmp"], setup["repo"]
    home, fingerprint, keyring = gpg_key
    env = {**os.environ, "GNUPGHOME": str(home)}
    run = subprocess.run(
        [
            "skopeo",
            "copy",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            "--registries.d",
            str(setup["registries_d"]),
            "--sign-by",
            fingerprint,
            f"oci:{tmp / 'src'}:v1",
            f"docker://{repo}:v1",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert run.returncode == 0, run.stderr
    policy = setup["policy"]({"type": "signedBy", "keyType": "GPGKeys", "keyPath": str(keyring)})
    accepted = _verify(setup, f"{repo}:v1", policy)
    assert accepted.returncode == 0, accepted.stderr
    assert _verify(setup, f"{repo}:v2", policy).returncode == 1
    sealpod(
        "image",
        "sign",
        f"{repo}:v2",
        "--sign-by",
        fingerprint,
        "--gpg-home",
        home,
        "--registries-d",
        setup["registries_d"],
        "--tls-verify=false",
    )
    skopeo = subprocess.run(
        [
            "skopeo",
            "--policy",
            str(policy),
            "--registries.d",
            str(setup["registries_d"]),
            "copy",
            "--src-tls-verify=false",
            "--remove-signatures",
            f"docker://{repo}:v2",
            f"oci:{tmp / 'out'}:v2",
        ],
        capture_output=True,
        text=True,
    )
    assert skopeo.returncode == 0, skopeo.stderr
    keydata = setup["policy"](
        {"type": "signedBy", "keyType": "GPGKeys", "keyData": base64.b64encode(keyring.read_bytes()).decode()},
        "keydata.json",
    )
    assert _verify(setup, f"{repo}:v2", keydata).returncode == 0


def test_pull_enforces_the_policy_before_fetching_any_layer(
    setup: dict[str, Any], registry: LocalRegistry, trixie_tools: Path
) -> None:
    tmp, repo = setup["tmp"], setup["repo"]
    sealpod("image", "keygen", "--output-key-prefix", tmp / "k")
    sealpod("image", "sign", f"{repo}:v1", "--key", tmp / "k.key", "--tls-verify=false")
    requests: list[str] = []
    with flaky_proxy(registry.host, failures=0, requests=requests) as (host, _):
        proxied = repo.replace(registry.host, host)
        policy = tmp / "p.json"
        remap = {"type": "remapIdentity", "prefix": host, "signedPrefix": registry.host}  # the proxy is a mirror
        policy.write_text(
            json.dumps(
                {"default": [{"type": "sigstoreSigned", "keyPath": str(tmp / "k.pub"), "signedIdentity": remap}]}
            )
        )
        refused = sealpod(
            "pull",
            f"{proxied}:v2",
            "--rootfs",
            tmp / "r2",
            "--tls-verify=false",
            "--policy",
            policy,
            "--registries-d",
            setup["registries_d"],
            ok=False,
        )
        assert refused.returncode == 1
        assert "no sigstoreSigned signatures" in refused.stderr
        assert not (tmp / "r2").exists()
        layer_gets = [r for r in requests if "/blobs/" in r and r.startswith("GET")]
        assert len(layer_gets) == 1, f"only the config blob may be fetched before the verdict: {layer_gets}"
        accepted = sealpod(
            "pull",
            f"{proxied}:v1",
            "--rootfs",
            tmp / "r1",
            "--tls-verify=false",
            "--policy",
            policy,
            "--registries-d",
            setup["registries_d"],
        )
        assert "signature policy: accepted" in accepted.stderr
        assert (tmp / "r1/app/version").read_bytes() == b"one"
