"""The generic enclave's measurement: stable for the same code and key, changed by any file or another key."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import sealpod
from sealpod.enclave.measure import measure

SEALPOD = str(Path(sys.executable).with_name("sealpod"))


def copy_package(tmp_path: Path) -> Path:
    target = tmp_path / "pkg"
    shutil.copytree(Path(sealpod.__file__).parent, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def test_same_code_and_key_measure_the_same(tmp_path: Path) -> None:
    package = copy_package(tmp_path)
    first = measure(tmp_path / "key.pem", package)
    second = measure(tmp_path / "key.pem", package)
    assert first == second
    assert len(first.mr_enclave) == 32
    assert len(first.mr_signer) == 32
    assert first.files > 50


def test_a_changed_file_changes_mrenclave_but_not_mrsigner(tmp_path: Path) -> None:
    package = copy_package(tmp_path)
    before = measure(tmp_path / "key.pem", package)
    with (package / "errors.py").open("a") as out:
        out.write("# tampered\n")
    after = measure(tmp_path / "key.pem", package)
    assert after.mr_enclave != before.mr_enclave
    assert after.mr_signer == before.mr_signer


def test_another_signing_key_changes_mrsigner_only(tmp_path: Path) -> None:
    package = copy_package(tmp_path)
    one = measure(tmp_path / "one.pem", package)
    two = measure(tmp_path / "two.pem", package)
    assert one.mr_enclave == two.mr_enclave
    assert one.mr_signer != two.mr_signer
    assert (tmp_path / "one.pem").stat().st_mode & 0o777 == 0o600


def test_cli_prints_the_measurement_as_json(tmp_path: Path) -> None:
    proc = subprocess.run(
        [SEALPOD, "enclave", "measure", "--key", str(tmp_path / "key.pem"), "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    values = json.loads(proc.stdout)
    expected = measure(tmp_path / "key.pem")
    assert values["mr_enclave"] == expected.mr_enclave.hex()
    assert values["mr_signer"] == expected.mr_signer.hex()
    assert values["isv_svn"] == 1


def test_a_key_file_that_is_not_rsa_is_refused(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "key.pem"
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    proc = subprocess.run(
        [SEALPOD, "enclave", "measure", "--key", str(path)], capture_output=True, text=True, check=False
    )
    assert proc.returncode != 0
    assert "is not an RSA private key" in proc.stderr


def test_reference_values_admit_exactly_this_identity(tmp_path: Path) -> None:
    identity = measure(tmp_path / "key.pem", copy_package(tmp_path))
    assert identity.reference_values() == {
        "mr_enclave": [identity.mr_enclave.hex()],
        "mr_signer": [identity.mr_signer.hex()],
        "isv_prod_id": [1],
        "isv_svn": [1],
    }
