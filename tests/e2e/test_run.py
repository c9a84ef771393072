"""``sealpod run`` end to end: a tenant's encrypted, signed image runs in the (simulated) enclave with its own
entrypoint, env, workdir and user, sandboxed; the workload's output and exit status are what the user gets; an
enclave the KBS does not know and a tampered command line get nothing; no plaintext reaches the host's disk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from sealpod.enclave.measure import measure
from sealpod.kbs.client.admin import AdminClient
from sealpod.oci.localregistry import LocalRegistry
from tests.conftest import need, run_tool
from tests.e2e.pool import Pool
from tests.e2e.tenant import tenant
from tests.helpers import E, file_contains, make_tar
from tests.kbs.conftest import KbsProcess

SEALPOD = str(Path(sys.executable).with_name("sealpod"))
CANARY_FILE = b"canary-file-7f3a9c1e"
CANARY_ENV = "canary-env-51d0b2aa"
SCRIPT = (
    "echo user=$(busybox id -u):$(busybox id -g); echo host=$(busybox hostname); echo cwd=$(busybox pwd);"
    " echo env=$SECRET_ENV; busybox cat /app/secret.txt; echo;"
    " echo pid=$$; echo procs=$(busybox ls /proc | busybox grep -c '^[0-9]');"
    " busybox mount -t tmpfs none /tmp 2>/dev/null && echo mount=yes || echo mount=no;"
    " test -e /usr/bin/python3 && echo hostfs=yes || echo hostfs=no;"
    " echo links=$(busybox grep -c : /proc/net/dev); exit 7"
)


def _image_layers() -> list[bytes]:
    busybox = Path(need("busybox")).resolve().read_bytes()
    return [
        make_tar(
            [
                E("bin", "dir"),
                E("bin/busybox", data=busybox, mode=0o755),
                E("bin/sh", "symlink", link="busybox"),
                E("etc", "dir"),
                E("etc/passwd", data=b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/app:/bin/sh\n"),
                E("etc/group", data=b"root:x:0:\napp:x:1000:\n"),
            ]
        ),
        make_tar([E("app", "dir", uid=1000, gid=1000), E("app/secret.txt", data=CANARY_FILE)]),
    ]


RUN_POLICY: dict[str, object] = {"allow_command": True, "allow_env": ["X"]}
CONFIG: dict[str, object] = {
    "Entrypoint": ["/bin/sh", "-c"],
    "Cmd": [SCRIPT],
    "Env": [f"SECRET_ENV={CANARY_ENV}"],
    "User": "app",
    "WorkingDir": "/app",
}


def _deploy(
    tmp_path: Path,
    registry: LocalRegistry,
    server: KbsProcess,
    node: dict[str, str],
    *,
    registered: bool = True,
    run_policy: Mapping[str, object] | None = None,
    config: Mapping[str, object] | None = None,
    repository: str | None = None,
) -> str:
    """The tenant's side for this node's enclave (the image ``config``, CONFIG by default): returns the image
    reference."""
    me = measure(Path(node["SEALPOD_STATE_DIR"]) / "enclave-signing-key.pem")
    mr_enclave = me.mr_enclave if registered else bytes(32)  # else: the tenant registered another enclave build
    identity = (mr_enclave, me.mr_signer, me.isv_prod_id, me.isv_svn)
    extra = {"repository": repository} if repository else {}
    return tenant(
        tmp_path,
        registry,
        server.url,
        layers=_image_layers(),
        config=dict(config or CONFIG),
        identity=identity,
        run_policy=dict(run_policy) if run_policy is not None else None,
        **extra,
    )


def _run(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SEALPOD, "run", *args], input=stdin, capture_output=True, text=True, env=env, check=False, timeout=120
    )


def test_an_encrypted_signed_image_runs_sandboxed_as_its_own_user(
    registry: LocalRegistry,
    kbs_factory: Callable[..., KbsProcess],
    node: dict[str, str],
    tmp_path: Path,
) -> None:
    server = kbs_factory()
    image = _deploy(tmp_path, registry, server, node, run_policy=RUN_POLICY)

    proc = _run(node, image, "--kbs", server.url, "--sim", "--tls-verify=false", "--name", "web1")
    assert proc.returncode == 7, proc.stderr
    lines = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
    assert lines["user"] == "1000:1000"
    assert lines["host"] == "web1"
    assert lines["cwd"] == "/app"
    assert lines["env"] == CANARY_ENV
    assert CANARY_FILE.decode() in proc.stdout
    assert lines["pid"] == "1"  # its own pid namespace, where it is init
    assert int(lines["procs"]) <= 4  # itself and this pipeline, nothing of the host
    assert lines["mount"] == "no"
    assert lines["hostfs"] == "no"
    assert lines["links"] == "1"  # only lo: its own network namespace
    assert "simulated SGX" in proc.stderr

    # a command from the host replaces Cmd, and -e adds to Env
    flags = ("--kbs", server.url, "--sim", "--tls-verify=false")
    proc = _run(node, image, *flags, "-e", "X=1", "echo x=$X; exit 3")
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout.strip() == "x=1"
    # the kernel's view of the workload: the OCI default bounding set, no effective capabilities as a non-root
    # user, no_new_privs, a seccomp filter
    proc = _run(node, image, *flags, "busybox grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status")
    assert proc.returncode == 0, proc.stderr
    status = dict(line.split(":\t") for line in proc.stdout.splitlines())
    assert status == {
        "CapEff": "0000000000000000",
        "CapBnd": "00000000a80425fb",  # what docker/runc show for their default set
        "NoNewPrivs": "1",
        "Seccomp": "2",
    }
    # the tenant's run policy allows X, not other variables
    proc = _run(node, image, *flags, "-e", "LD_PRELOAD=/x.so", "echo ran")
    assert proc.returncode == 125
    assert "asked to set LD_PRELOAD in the environment" in proc.stderr
    assert "ran" not in proc.stdout
    # --net host: the host's interfaces; by default only lo (checked above)
    proc = _run(node, image, *flags, "--net", "host", "busybox grep -c : /proc/net/dev")
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) == Path("/proc/net/dev").read_text().count(":")
    # a size that is not one is refused before anything starts
    proc = _run(node, image, *flags, "--memory", "lots", "true")
    assert proc.returncode == 1
    assert "memory size 'lots' is not a number" in proc.stderr
    # stdin reaches the workload
    proc = _run(node, image, *flags, "busybox tr a-z A-Z", stdin="through the enclave\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "THROUGH THE ENCLAVE\n"

    # seccomp: creating a user namespace needs no capability, the filter is what refuses it
    proc = _run(node, image, *flags, "busybox unshare -U true 2>&1; echo rc=$?")
    assert proc.returncode == 0, proc.stderr
    assert "Operation not permitted" in proc.stdout
    assert "rc=0" not in proc.stdout

    # limits: --pids-limit caps the processes, --memory ends a workload that allocates past it
    proc = _run(node, image, *flags, "--pids-limit", "4", "for i in 1 2 3 4 5 6; do busybox sleep 1 & done; wait")
    assert "can't fork" in proc.stderr + proc.stdout
    proc = _run(node, image, *flags, "--memory", "16m", "busybox dd if=/dev/zero of=/dev/null bs=64M count=1")
    assert proc.returncode == 137, proc.stderr  # SIGKILL from the OOM killer
    proc = _run(node, image, *flags, "--memory", "64m", "busybox dd if=/dev/zero of=/dev/null bs=16M count=1")
    assert proc.returncode == 0, proc.stderr

    # no plaintext file content anywhere the host can see: registry storage, the node's state, the test's /tmp dir
    # (except the tenant's own plaintext layout). The image config is not encrypted by ocicrypt (the format encrypts
    # layers only), so Env is readable in the registry; it must not appear anywhere else.
    config_blobs = 0
    for path in [*registry.storage.rglob("*"), *tmp_path.rglob("*")]:
        if path.is_file() and not path.is_symlink() and not path.is_relative_to(tmp_path / "plain"):
            assert not file_contains(path, CANARY_FILE), path
            if file_contains(path, CANARY_ENV.encode()):
                assert path.is_relative_to(registry.storage), path
                config_blobs += 1
    assert config_blobs >= 1
    # the default rootfs is gocryptfs: ciphertext on the host disk (scanned above), its key sealed; a second run of
    # the same image reopens it without pulling a layer, but still checks the signatures
    state = Path(node["SEALPOD_STATE_DIR"])
    (volume,) = (state / "rootfs").iterdir()
    assert (volume / "cipher/gocryptfs.conf").exists()
    assert (volume / "key.sealed").read_bytes().startswith(b"sealpod-sealed-v1")
    assert "reopened the sealed rootfs" in proc.stderr
    assert not os.path.ismount(volume / "mnt")
    assert str(volume) not in Path("/proc/self/mountinfo").read_text()

    # --rootfs memory: a tmpfs the enclave alone sees, removed at exit
    proc = _run(node, image, *flags, "--rootfs", "memory", "busybox cat /app/secret.txt")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == CANARY_FILE.decode()
    assert "reopened" not in proc.stderr
    assert not any((state / "run").iterdir())

    # a sealed key another enclave build (or platform) sealed, or one the host altered, does not open: that volume
    # is never mounted; it is made anew with a new key and the image is pulled again
    sealed = volume / "key.sealed"
    altered = sealed.read_bytes()[:-1] + bytes([sealed.read_bytes()[-1] ^ 1])
    sealed.write_bytes(altered)
    old_conf = (volume / "cipher/gocryptfs.conf").read_bytes()
    proc = _run(node, image, *flags, "busybox cat /app/secret.txt")
    assert proc.returncode == 0, proc.stderr
    assert "does not open" in proc.stderr
    assert "starting the rootfs anew" in proc.stderr
    assert "reopened" not in proc.stderr
    assert proc.stdout == CANARY_FILE.decode()
    assert (volume / "cipher/gocryptfs.conf").read_bytes() != old_conf
    assert sealed.read_bytes() != altered


def test_an_enclave_the_kbs_does_not_know_gets_nothing_and_runs_nothing(
    registry: LocalRegistry,
    kbs_factory: Callable[..., KbsProcess],
    node: dict[str, str],
    tmp_path: Path,
) -> None:
    server = kbs_factory()
    image = _deploy(tmp_path, registry, server, node, registered=False)
    proc = _run(node, image, "--kbs", server.url, "--sim", "--tls-verify=false")
    assert proc.returncode == 125
    assert "PolicyDeny" in proc.stderr
    assert "user=" not in proc.stdout
    volumes = Path(node["SEALPOD_STATE_DIR"]) / "rootfs"
    assert not volumes.exists() or not any(volumes.iterdir()), "the refused first pull left no rootfs"


def test_without_sgx_or_sim_the_enclave_refuses_to_start(node: dict[str, str]) -> None:
    proc = _run(node, "127.0.0.1:1/none:v1", "--kbs", "http://127.0.0.1:1")
    assert proc.returncode == 125
    assert "no SGX device here" in proc.stderr


def test_run_needs_a_kbs(node: dict[str, str]) -> None:
    proc = _run(node, "127.0.0.1:1/none:v1")
    assert proc.returncode == 1
    assert "no KBS given" in proc.stderr


def test_a_wrongly_signed_image_and_a_tampered_layer_are_refused_before_the_workload_starts(
    registry: LocalRegistry,
    kbs_factory: Callable[..., KbsProcess],
    node: dict[str, str],
    tmp_path: Path,
) -> None:
    server = kbs_factory()
    image = _deploy(tmp_path, registry, server, node)
    common = ("--kbs", server.url, "--sim", "--tls-verify=false")
    flags = (*common, "--rootfs", "memory")

    # without a run policy from the tenant, the host cannot replace the command or add to the environment
    proc = _run(node, image, *flags, "busybox cat /app/secret.txt")
    assert proc.returncode == 125
    assert "asked to replace the image's command" in proc.stderr
    assert CANARY_FILE.decode() not in proc.stdout
    proc = _run(node, image, *flags, "-e", "X=1")
    assert proc.returncode == 125
    assert "asked to set X in the environment" in proc.stderr

    # the same image in another repository, signed by a key the policy does not name
    other = image.replace("tenant/app:v1", "tenant/other:v1")
    run_tool(
        need("skopeo"), "copy", "--src-tls-verify=false", "--dest-tls-verify=false", "--remove-signatures",
        f"docker://{image}", f"docker://{other}",
    )  # fmt: skip
    env = {**node, "COSIGN_PASSWORD": "pw"}
    for args in (
        ["image", "keygen", "--output-key-prefix", str(tmp_path / "stranger")],
        ["image", "sign", other, "--key", str(tmp_path / "stranger.key"), "--tls-verify=false"],
    ):
        subprocess.run([SEALPOD, *args], check=True, capture_output=True, env=env)
    proc = _run(node, other, *common)  # the default rootfs: gocryptfs
    assert proc.returncode == 125
    assert not any((Path(node["SEALPOD_STATE_DIR"]) / "rootfs").iterdir()), "the failed first pull left no rootfs"
    assert "signature" in proc.stderr
    assert "tenant/other:v1" in proc.stderr
    assert "user=" not in proc.stdout

    # one flipped byte in a stored (encrypted) layer: the registry serves it, the enclave refuses it
    inspect = subprocess.run(
        [SEALPOD, "inspect", image, "--tls-verify=false", "--raw"], check=True, capture_output=True, text=True
    )
    busybox_layer = json.loads(inspect.stdout)["layers"][0]["digest"].removeprefix("sha256:")
    stored = registry.storage / "data/docker/registry/v2/blobs/sha256" / busybox_layer[:2] / busybox_layer / "data"
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 1
    stored.write_bytes(bytes(data))
    proc = _run(node, image, *flags)
    assert proc.returncode == 125
    assert "sha256:" in proc.stderr
    assert "HMAC" in proc.stderr or "digest" in proc.stderr
    assert "user=" not in proc.stdout
    assert not any((Path(node["SEALPOD_STATE_DIR"]) / "run").iterdir())


@pytest.mark.parametrize("pooled", [False, True], ids=["fresh-enclave", "pre-launched"])
def test_detached_containers_ps_logs_stop_rm(
    registry: LocalRegistry,
    kbs_factory: Callable[..., KbsProcess],
    node: dict[str, str],
    tmp_path: Path,
    request: pytest.FixtureRequest,
    pooled: bool,
) -> None:
    pool: Pool | None = request.getfixturevalue("pool") if pooled else None
    server = kbs_factory()
    image = _deploy(tmp_path, registry, server, node)
    flags = ("--kbs", server.url, "--sim", "--tls-verify=false", "--rootfs", "memory")
    with AdminClient(server.url) as admin:
        admin.put_resource("default/run-policy/test", json.dumps(RUN_POLICY).encode())

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([SEALPOD, *args], capture_output=True, text=True, env=node, check=False, timeout=60)

    proc = _run(node, image, *flags, "-d", "--name", "svc", "echo ready; while true; do busybox sleep 0.1; done")
    assert proc.returncode == 0, proc.stderr
    container_id = proc.stdout.strip()
    assert len(container_id) == 32
    try:
        deadline = time.monotonic() + 60
        while "ready" not in cli("logs", "svc").stdout:
            assert time.monotonic() < deadline, cli("logs", "svc").stdout
            time.sleep(0.1)
        listing = cli("ps").stdout
        assert "svc" in listing
        assert "running" in listing
        assert container_id[:12] in listing
        assert "a container named 'svc' exists" in _run(node, image, *flags, "-d", "--name", "svc").stderr
        refused = cli("rm", "svc")
        assert refused.returncode == 2
        assert "is running" in refused.stderr
        # the shell is pid 1 and ignores SIGTERM: stop escalates after its grace time
        stopped = cli("stop", "svc", "--time", "1")
        assert stopped.stdout.strip() == "svc: exited (137)", stopped.stderr
        assert "exited (137)" in cli("ps", "-a").stdout
        assert "svc" not in cli("ps").stdout
        assert not any((Path(node["SEALPOD_STATE_DIR"]) / "run").iterdir()), "the enclave cleaned up"
    finally:
        cli("rm", "-f", "svc")
    assert "svc" not in cli("ps", "-a").stdout
    assert "no container named 'svc'" in cli("logs", "svc").stderr

    # a workload that handles SIGTERM gets it (forwarded host -> supervisor -> enclave -> workload) and exits itself
    script = "trap 'echo got-term; exit 3' TERM; echo ready; while true; do busybox sleep 0.1; done"
    assert _run(node, image, *flags, "-d", "--name", "trapper", script).returncode == 0
    try:
        deadline = time.monotonic() + 60
        while "ready" not in cli("logs", "trapper").stdout:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert cli("stop", "trapper", "--time", "20").stdout.strip() == "trapper: exited (3)"
        assert "got-term" in cli("logs", "trapper").stdout
    finally:
        cli("rm", "-f", "trapper")

    # -d --rm: the record goes when the container exits
    proc = _run(node, image, *flags, "-d", "--rm", "--name", "once", "echo done")
    assert proc.returncode == 0, proc.stderr
    deadline = time.monotonic() + 60
    while "once" in cli("ps", "-a").stdout:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    if pool is not None:  # every container ran in an enclave of the pool
        assert len(pool.handed_over()) == 3
