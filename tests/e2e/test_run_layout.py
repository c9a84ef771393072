"""``sealpod run oci:DIR:TAG``: the enclave pulls an encrypted image from an OCI layout on the host's disk, with its
signature kept in the layout, under a policy scoped to the layout directory; an unsigned tag, a signature by another
key and a signature moved onto another image are refused before anything is decrypted or run."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from sealpod.enclave.measure import measure
from sealpod.oci.layout import OciLayout
from sealpod.signature.sigstore import attachment_tag
from tests.e2e.tenant import LAYOUT_IDENTITY, tenant
from tests.e2e.test_run import CANARY_FILE, _image_layers
from tests.kbs.conftest import KbsProcess

SEALPOD = str(Path(sys.executable).with_name("sealpod"))


def _sealpod(env: dict[str, str], *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SEALPOD, *map(str, args)], capture_output=True, text=True, env=env, check=False, timeout=120)


def test_a_layout_image_runs_and_unsigned_or_wrongly_signed_tags_are_refused(
    kbs_factory: Callable[..., KbsProcess], node: dict[str, str], tmp_path: Path
) -> None:
    server = kbs_factory()
    me = measure(Path(node["SEALPOD_STATE_DIR"]) / "enclave-signing-key.pem")
    image = tenant(
        tmp_path,
        None,
        server.url,
        layers=_image_layers(),
        config={"Entrypoint": ["/bin/busybox", "cat", "/app/secret.txt"]},
        identity=(me.mr_enclave, me.mr_signer, me.isv_prod_id, me.isv_svn),
    )
    directory = tmp_path / "images"
    assert image == f"oci:{directory}:v1"
    flags = ("--kbs", server.url, "--sim", "--rootfs", "memory")
    env = {**node, "COSIGN_PASSWORD": "pw"}

    proc = _sealpod(env, "run", image, *flags)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == CANARY_FILE.decode()

    def encrypt(tag: str) -> str:
        dest = f"oci:{directory}:{tag}"
        done = _sealpod(
            {**env, "OCICRYPT_KEYPROVIDER_CONFIG": str(tmp_path / "ocicrypt.json")},
            "image",
            "encrypt",
            f"oci:{tmp_path / 'plain'}:v1",
            dest,
            "--recipient",
            "provider:attestation-agent:keyid=kbs:///default/image-kek/app",
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    # an unsigned tag of the same layout (the same plaintext, encrypted again: another manifest digest)
    encrypt("unsigned")
    proc = _sealpod(env, "run", f"oci:{directory}:unsigned", *flags)
    assert proc.returncode == 125
    assert f"oci:{directory}:unsigned has no sigstoreSigned signatures" in proc.stderr
    assert CANARY_FILE.decode() not in proc.stdout

    # signed, but by a key the policy does not name
    encrypt("other-key")
    assert _sealpod(env, "image", "keygen", "--output-key-prefix", tmp_path / "other").returncode == 0
    signed = _sealpod(
        env,
        "image",
        "sign",
        f"oci:{directory}:other-key",
        "--key",
        tmp_path / "other.key",
        "--identity",
        LAYOUT_IDENTITY,
    )
    assert signed.returncode == 0, signed.stderr
    proc = _sealpod(env, "run", f"oci:{directory}:other-key", *flags)
    assert proc.returncode == 125
    assert "a signature does not verify with the policy's keys" in proc.stderr
    assert CANARY_FILE.decode() not in proc.stdout

    # the host moves v1's good signature onto another image: its payload still names v1's manifest
    moved = encrypt("moved")
    layout = OciLayout(directory)
    v1 = layout.find("v1").digest
    layout.tag(layout.find(attachment_tag(v1)), attachment_tag(moved))
    proc = _sealpod(env, "run", f"oci:{directory}:moved", *flags)
    assert proc.returncode == 125
    assert f"signed manifest {v1} is not {moved}" in proc.stderr
    assert CANARY_FILE.decode() not in proc.stdout
    assert not any((Path(node["SEALPOD_STATE_DIR"]) / "run").iterdir())
