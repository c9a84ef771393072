"""Secrets for the workload, end to end through ``sealpod run``: the CDH resource API on the workload's loopback, a
sealed secret in the image's Env and from ``-e``, the pod's init-data choosing its tenant's KBS (and bound into the
evidence, so that the tenant's resource policy can require it), the run policy's switches, and a canary scan of
everything the host sees while the workload runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from sealpod._internal.processes import descendants
from sealpod.kbs.client.admin import AdminClient
from sealpod.oci.localregistry import LocalRegistry
from tests.conftest import need, run_tool
from tests.e2e.test_run import _deploy
from tests.helpers import file_contains
from tests.kbs.conftest import KbsProcess

SEALPOD = str(Path(sys.executable).with_name("sealpod"))
DB_PASSWORD = b"canary-db-password-9c41e0"
API_TOKEN = b"canary-api-token-3b7d22"
HOST_PASSWORD = b"canary-host-env-5e8a01"
API = "http://127.0.0.1:8006"
SCRIPT = (
    f"echo api=$(busybox wget -q -O - {API}/cdh/resource/default/api/token); echo env=$DB_PASSWORD;"
    " echo host=$FROM_HOST; echo ready; busybox sleep 3;"
    " st() { busybox wget -S -O /dev/null $1 2>&1 | busybox grep -o 'HTTP/1.1 [0-9]*' | busybox head -1; };"
    f" for p in default/denied/x default/unlisted/y default/api/missing; do echo $p $(st {API}/cdh/resource/$p); done;"
    f" echo aa $(st {API}/aa/token?token_type=kbs)"
)
#: The tenant's resource policy: an affirming enclave whose init-data names this KBS, and never default/denied/*.
RESOURCE_POLICY = """package policy

import rego.v1

default allow := false

allow if {
	data.plugin == "resource"
	input.submods.cpu0["ear.status"] == "affirming"
	evidence := input.submods.cpu0["ear.veraison.annotated-evidence"]
	evidence.init_data_claims["cdh.toml"].kbc.url == "%s"
	data["resource-path"][1] != "denied"
}
"""


def _init_data(tmp_path: Path, kbs_url: str, policy_uri: str = "kbs:///default/security-policy/test") -> Path:
    path = tmp_path / "init-data.toml"
    path.write_text(
        'version = "0.1.0"\nalgorithm = "sha384"\n[data]\n'
        f'"cdh.toml" = \'\'\'\n[kbc]\nname = "cc_kbc"\nurl = "{kbs_url}"\n\n[image]\n'
        f"image_security_policy_uri = \"{policy_uri}\"\n'''\n"
        "\"policy.rego\" = '''\npackage agent_policy\ndefault CreateContainerRequest := true\n'''\n"
    )
    return path


def _seal(tmp_path: Path, resource: str, env: dict[str, str]) -> str:
    seal = ("kbs", "seal", resource, "--key", str(tmp_path / "sealing.pem"), "--kid", "kbs:///default/sealing/pub")
    proc = subprocess.run(
        [SEALPOD, *seal, "--public-out", str(tmp_path / "sealing.pub")],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    sealed = proc.stdout.strip()
    assert sealed.startswith("sealed.")
    assert len(sealed.split(".")) == 4
    return sealed


def _host_processes_holding(needles: list[bytes], workload_pidns: set[str]) -> list[str]:
    """The host's processes (outside the workload's pid namespace) whose environment or command line holds one of
    ``needles``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(entry / "ns/pid") in workload_pidns:
                continue
            text = (entry / "environ").read_bytes() + (entry / "cmdline").read_bytes()
        except OSError:
            continue
        found += [f"{entry.name}: {needle!r}" for needle in needles if needle in text]
    return found


def test_the_workload_gets_its_secrets_from_its_tenants_kbs_and_the_host_only_sealed_forms(
    registry: LocalRegistry,
    kbs_factory: Callable[..., KbsProcess],
    node: dict[str, str],
    tmp_path: Path,
) -> None:
    server = kbs_factory()
    sealed_db = _seal(tmp_path, "kbs:///default/db/password", node)
    sealed_host = _seal(tmp_path, "kbs:///default/host/password", node)
    config = {
        "Entrypoint": ["/bin/sh", "-c"],
        "Cmd": [SCRIPT],
        "Env": [f"DB_PASSWORD={sealed_db}"],
    }
    run_policy = {
        "allow_command": True,
        "allow_env": ["FROM_HOST"],
        "cdh_resources": ["kbs:///default/api/token", "kbs:///default/denied/x", "kbs:///default/api/missing"],
    }
    image = _deploy(tmp_path, registry, server, node, config=config, run_policy=run_policy)
    with AdminClient(server.url) as admin:
        admin.put_resource("default/sealing/pub", (tmp_path / "sealing.pub").read_bytes())
        admin.put_resource("default/db/password", DB_PASSWORD)
        admin.put_resource("default/api/token", API_TOKEN)
        admin.put_resource("default/host/password", HOST_PASSWORD)
        admin.put_resource("denied/x/y", b"never")
        admin.put_resource("default/denied/x", b"never either")
        admin.set_resource_policy(RESOURCE_POLICY % server.url)
    init_data = _init_data(tmp_path, server.url)

    # the node's KBS address is wrong on purpose: the pod's init-data chooses its tenant's KBS
    args = [SEALPOD, "run", image, "--kbs", "http://127.0.0.1:9", "--sim", "--tls-verify=false", "--no-pool"]
    process = subprocess.Popen(
        [*args, "--init-data", str(init_data), "-e", f"FROM_HOST={sealed_host}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=node,
    )
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = process.stdout.readline().decode()
        if not line:
            break
        lines.append(line.strip())
        if line.strip() == "ready":
            break
    assert process.stderr is not None
    assert "ready" in lines, (lines, process.stderr.read().decode() if process.poll() is not None else "")
    # while the workload runs: no host process's environment or command line holds a plaintext
    workload_pidns = {os.readlink(f"/proc/{pid}/ns/pid") for pid in descendants(process.pid)} - {
        os.readlink("/proc/self/ns/pid")
    }
    assert workload_pidns, "the workload has its own pid namespace"
    assert _host_processes_holding([DB_PASSWORD, API_TOKEN, HOST_PASSWORD], workload_pidns) == []
    # and nothing on the host's disk: the node's state, the registry, the test's directory (but the KBS's store,
    # which is the tenant's relying party, not the node)
    for root in (Path(node["SEALPOD_STATE_DIR"]), registry.storage, tmp_path):
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink() and not path.name.startswith("kbs.sqlite"):
                for needle in (DB_PASSWORD, API_TOKEN, HOST_PASSWORD):
                    assert not file_contains(path, needle), (path, needle)
    out, err = process.communicate(timeout=60)
    lines += out.decode().splitlines()
    stderr = err.decode()
    assert process.returncode == 0, stderr
    values = dict(line.split("=", 1) for line in lines if "=" in line)
    assert values["api"] == API_TOKEN.decode()  # over the CDH API
    assert values["env"] == DB_PASSWORD.decode()  # the image's sealed Env, unsealed
    assert values["host"] == HOST_PASSWORD.decode()  # a sealed -e value, unsealed
    statuses = dict(line.split(" ", 1) for line in lines if line.startswith(("default/", "aa ")))
    assert statuses["default/denied/x"] == "HTTP/1.1 500"  # the KBS's resource policy: CDH's status
    assert statuses["default/unlisted/y"] == "HTTP/1.1 403"  # not in the run policy's cdh_resources
    assert statuses["default/api/missing"] == "HTTP/1.1 500"  # the KBS has no such resource
    assert statuses["aa"] == "HTTP/1.1 404"  # the enclave's token and key stay in the enclave
    assert "init-data chooses the KBS" in stderr
    for needle in (DB_PASSWORD, API_TOKEN, HOST_PASSWORD):
        assert needle.decode() not in stderr  # the host's log of the run

    # the host cannot reach the API: it is on the workload's loopback only
    assert subprocess.run(["busybox", "wget", "-q", "-T", "1", "-O", "-", f"{API}/info"], check=False).returncode != 0

    # without the init-data the tenant's resource policy refuses everything: no policy, no keys, no start
    proc = subprocess.run(
        [SEALPOD, "run", image, "--kbs", server.url, "--sim", "--tls-verify=false", "--no-pool"],
        capture_output=True,
        text=True,
        env=node,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 125
    assert "denied by policy" in proc.stderr

    # init-data that is not what the enclave was launched with is refused by the KBS (CONFIGID mismatch)
    # is shown in tests/kbs/test_init_data.py; a malformed one stops the enclave before it attests
    bad = tmp_path / "bad.toml"
    bad.write_text('version = "0.1.0"\nalgorithm = "md5"\n[data]\n')
    proc = subprocess.run([*args, "--init-data", str(bad)], capture_output=True, text=True, env=node, check=False)
    assert proc.returncode == 125
    assert "algorithm 'md5' is not supported" in proc.stderr

    # a sealed secret the KBS refuses stops the start, naming the variable
    with AdminClient(server.url) as admin:
        admin.delete_resource("default/host/password")
    proc = subprocess.run(
        [*args, "--init-data", str(init_data), "-e", f"FROM_HOST={sealed_host}"],
        capture_output=True,
        text=True,
        env=node,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 125
    assert "environment variable FROM_HOST (sealpod run -e) cannot be unsealed" in proc.stderr
    assert "api=" not in proc.stdout

    # the tenant switches the API off: the workload gets no answer on the port
    with AdminClient(server.url) as admin:
        admin.put_resource("default/run-policy/test", json.dumps({**run_policy, "cdh_api": False}).encode())
    proc = subprocess.run(
        [*args, "--init-data", str(init_data), "busybox wget -q -T 2 -O - http://127.0.0.1:8006/info; echo rc=$?"],
        capture_output=True,
        text=True,
        env=node,
        timeout=120,
        check=False,
    )
    assert "rc=0" not in proc.stdout, proc.stdout
    assert "rc=" in proc.stdout, proc.stderr


def test_a_plain_image_in_place_of_the_tenants_encrypted_one_is_refused_when_the_run_policy_requires_encryption(
    registry: LocalRegistry,
    kbs_factory: Callable[..., KbsProcess],
    node: dict[str, str],
    tmp_path: Path,
) -> None:
    server = kbs_factory()
    config = {"Entrypoint": ["/bin/sh", "-c"], "Cmd": ["echo ran-$(busybox cat /app/secret.txt)"]}
    run_policy = {"require_encrypted_layers": True}
    image = _deploy(tmp_path, registry, server, node, config=config, run_policy=run_policy)
    # the host's swap: the same content unencrypted, even signed with the tenant's key (so that the signature
    # policy alone would pass it)
    plain = image.replace(":v1", ":plain")
    run_tool(need("skopeo"), "copy", "--dest-tls-verify=false", f"oci:{tmp_path / 'plain'}:v1", f"docker://{plain}")
    signed = subprocess.run(
        [SEALPOD, "image", "sign", plain, "--key", str(tmp_path / "cosign.key"), "--tls-verify=false"],
        capture_output=True,
        text=True,
        env={**node, "COSIGN_PASSWORD": "pw"},
        check=False,
    )
    assert signed.returncode == 0, signed.stderr
    flags = ("--kbs", server.url, "--sim", "--tls-verify=false", "--no-pool")
    encrypted = subprocess.run([SEALPOD, "run", image, *flags], capture_output=True, text=True, env=node, check=False)
    assert encrypted.returncode == 0, encrypted.stderr
    assert encrypted.stdout.startswith("ran-")
    swapped = subprocess.run([SEALPOD, "run", plain, *flags], capture_output=True, text=True, env=node, check=False)
    assert swapped.returncode == 125
    assert "unencrypted layer(s)" in swapped.stderr
    assert "requires encrypted layers" in swapped.stderr
    assert "ran-" not in swapped.stdout
    # without the requirement the signed plain image runs: it is the run policy that refused it
    with AdminClient(server.url) as admin:
        admin.put_resource("default/run-policy/test", json.dumps({"require_encrypted_layers": False}).encode())
    allowed = subprocess.run([SEALPOD, "run", plain, *flags], capture_output=True, text=True, env=node, check=False)
    assert allowed.returncode == 0, allowed.stderr
    assert allowed.stdout.startswith("ran-")


def _secret_volume(root: Path, files: dict[str, str]) -> Path:
    """A directory laid out as the kubelet lays out a Secret volume: the files in a timestamped directory,
    ``..data`` pointing at it, and a symlink per key."""
    data = root / "..2026_12_06_10_00_00.000000001"
    data.mkdir(parents=True)
    for name, content in files.items():
        (data / name).write_text(content)
        (root / name).symlink_to(f"..data/{name}")
    (root / "..data").symlink_to(data.name)
    return root


def test_sealed_files_in_a_read_only_volume_are_unsealed_in_the_enclave_and_the_host_keeps_the_sealed_form(
    registry: LocalRegistry,
    kbs_factory: Callable[..., KbsProcess],
    node: dict[str, str],
    tmp_path: Path,
) -> None:
    server = kbs_factory()
    sealed_db = _seal(tmp_path, "kbs:///default/db/password", node)
    sealed_gone = _seal(tmp_path, "kbs:///default/gone/password", node)
    config = {"Entrypoint": ["/bin/sh", "-c"], "Cmd": ["true"]}
    image = _deploy(tmp_path, registry, server, node, config=config, run_policy={"allow_command": True})
    with AdminClient(server.url) as admin:
        admin.put_resource("default/sealing/pub", (tmp_path / "sealing.pub").read_bytes())
        admin.put_resource("default/db/password", DB_PASSWORD)
    secrets = _secret_volume(tmp_path / "secret-vol", {"password": sealed_db + "\n", "mode": "plain-config"})
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (scratch / "sealed-but-rw").write_text(sealed_db)
    script = (
        "echo pw=$(busybox cat /etc/app/password); echo mode=$(busybox cat /etc/app/mode);"
        " echo rw=$(busybox cat /work/sealed-but-rw | busybox cut -c1-7); echo made > /work/out;"
        " echo ro=$(busybox touch /etc/app/x 2>/dev/null && echo writable || echo read-only)"
    )
    args = [SEALPOD, "run", image, "--kbs", server.url, "--sim", "--tls-verify=false", "--no-pool"]
    volumes = ["-v", f"{secrets}:/etc/app:ro", "-v", f"{scratch}:/work"]
    proc = subprocess.run([*args, *volumes, script], capture_output=True, text=True, env=node, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    values = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
    assert values["pw"] == DB_PASSWORD.decode()  # through the kubelet's symlinks, unsealed
    assert values["mode"] == "plain-config"  # a file that is not sealed is what the host wrote
    assert values["rw"] == "sealed."  # a writable volume is the host's: nothing in it is unsealed
    assert values["ro"] == "read-only"
    assert (scratch / "out").read_text() == "made\n"  # and the workload's writes reach it
    assert "unsealed 1 file(s) in the volumes" in proc.stderr
    # the host's copy is still the sealed form, and no plaintext reached the host's disk
    assert (secrets / "password").read_text() == sealed_db + "\n"
    for root in (Path(node["SEALPOD_STATE_DIR"]), tmp_path):
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink() and not path.name.startswith("kbs.sqlite"):
                assert not file_contains(path, DB_PASSWORD), path

    # a sealed file whose secret the KBS does not hold stops the start, naming the file
    (secrets / "..2026_12_06_10_00_00.000000001" / "mode").write_text(sealed_gone)
    proc = subprocess.run([*args, *volumes, script], capture_output=True, text=True, env=node, timeout=120, check=False)
    assert proc.returncode == 125
    assert "the sealed secret in the file /etc/app/" in proc.stderr
    assert "cannot be unsealed" in proc.stderr
    assert "pw=" not in proc.stdout

    # a volume over what the image holds (its /app) is refused by the default run policy, naming the path
    proc = subprocess.run(
        [*args, "-v", f"{scratch}:/app", "busybox ls /app"], capture_output=True, text=True, env=node, check=False
    )
    assert proc.returncode == 125
    assert "a volume at /app: it would cover what the image holds there" in proc.stderr
    # unless the tenant lists it
    with AdminClient(server.url) as admin:
        admin.put_resource(
            "default/run-policy/test", json.dumps({"allow_command": True, "allow_volumes": ["/app"]}).encode()
        )
    proc = subprocess.run(
        [*args, "-v", f"{scratch}:/app", "busybox ls /app"], capture_output=True, text=True, env=node, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "sealed-but-rw" in proc.stdout
    # and a malformed volume is refused before anything starts
    bad = subprocess.run([*args, "-v", "relative-only"], capture_output=True, text=True, env=node, check=False)
    assert bad.returncode != 0
    assert "is not SOURCE:DESTINATION[:ro]" in bad.stderr
