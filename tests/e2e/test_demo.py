"""`sealpod demo`, the README's main job: the whole flow runs, the workload's own output appears, the two refusals
happen for the stated reasons, and everything the demo started is stopped; with a docker-registry, and without one
(an OCI layout directory holds the encrypted, signed image)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

SEALPOD = str(Path(sys.executable).with_name("sealpod"))
SECRET = b"the plaintext of this file only ever exists inside the enclave"


def _demo(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SEALPOD, "demo", *args], capture_output=True, text=True, check=False, timeout=300, env=env or dict(os.environ)
    )


def _check_the_flow(proc: subprocess.CompletedProcess[str], unsigned: str, store: Path, demo_dir: Path) -> None:
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    # the workload's own output: the image's Env, user, workdir, and the decrypted file
    assert "hello from inside the enclave" in proc.stdout
    assert "I am uid 1000, pid 1, on host demo, in /app" in proc.stdout
    assert "secret: the plaintext of this file only ever exists inside the enclave" in proc.stdout
    # the secrets only the KBS held: over the CDH API, and the image's sealed Env unsealed
    token = re.search(r"from the KBS over the CDH API: (api-token-[0-9a-f]{12})$", proc.stdout, re.M)
    password = re.search(r"sealed env DB_PASSWORD, unsealed: (db-[0-9a-f]{12})$", proc.stdout, re.M)
    assert token, proc.stdout
    assert password, proc.stdout
    assert proc.stdout.count(token.group(0)) == 2
    assert proc.stdout.count(password.group(0)) == 2
    # the refusals, each naming the check that failed
    assert f"{unsigned} has no sigstoreSigned signatures" in output
    assert "PolicyDeny" in output
    assert output.count("secret: the plaintext") == 2, "twice (cold and warm start); the refused runs printed nothing"
    assert "reopened the sealed rootfs" in output
    assert "gocryptfs ciphertext" in output
    # the image store only ever held ciphertext layers of the secret file
    files = [path for path in store.rglob("*") if path.is_file()]
    assert files
    for path in files:
        for needle in (SECRET, token.group(1).encode(), password.group(1).encode()):
            assert needle not in path.read_bytes(), path
    for started in (store, demo_dir / "kbs"):
        leftover = subprocess.run(["pgrep", "-f", str(started)], capture_output=True, check=False)
        assert leftover.returncode == 1, f"the demo left {started} running"


def _path_without(tool: str, farm: Path) -> str:
    """A PATH with every program of this one but ``tool``: a machine where it is not installed."""
    farm.mkdir()
    for directory in os.environ["PATH"].split(os.pathsep):
        if not Path(directory).is_dir():
            continue
        for entry in Path(directory).iterdir():
            link = farm / entry.name
            if entry.name != tool and not link.is_symlink():
                link.symlink_to(entry)
    return str(farm)


def test_demo_runs_the_whole_flow_and_shows_the_refusals(tmp_path: Path) -> None:
    demo_dir = tmp_path / "demo"
    proc = _demo("--workdir", str(demo_dir))
    assert "the image store is a local docker-registry" in proc.stdout
    _check_the_flow(proc, "hello:unsigned", demo_dir / "registry", demo_dir)


def test_demo_without_docker_registry_uses_an_oci_layout(tmp_path: Path) -> None:
    demo_dir = tmp_path / "demo"
    env = {**os.environ, "PATH": _path_without("docker-registry", tmp_path / "bin")}
    proc = _demo("--workdir", str(demo_dir), env=env)
    assert f"the image store is an OCI layout directory, {demo_dir / 'images'} (docker-registry is not installed)" in (
        proc.stdout.replace("\n", " ")
    ), proc.stdout
    assert "sigstore attachment in the layout" in proc.stdout
    _check_the_flow(proc, f"oci:{demo_dir / 'images'}:unsigned", demo_dir / "images", demo_dir)
    assert not (demo_dir / "registry").exists()
    # the signed tag's signature is in the layout, cosign's way: see tests/interop/test_layout_signatures.py
    index = (demo_dir / "images" / "index.json").read_text()
    assert '"kind": "dev.cosignproject.cosign/sigs"' in index


def test_demo_store_choice_is_checked_before_anything_starts(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": _path_without("docker-registry", tmp_path / "bin")}
    proc = _demo("--registry", "docker-registry", "--workdir", str(tmp_path / "d1"), env=env)
    assert proc.returncode != 0
    assert "docker-registry is not installed" in proc.stderr
    assert "--registry layout" in proc.stderr
    proc = _demo("--registry", "s3", "--workdir", str(tmp_path / "d2"))
    assert proc.returncode != 0
    assert "--registry 's3' is not one of auto, docker-registry, layout" in proc.stderr
    assert not (tmp_path / "d1").exists()
    assert not (tmp_path / "d2").exists()
