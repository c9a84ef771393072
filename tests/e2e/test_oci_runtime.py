"""``sealpod-runtime`` driven the way containerd's runc shim drives an OCI runtime (create, state, start, the init
process reaped by the shim, delete): a bundle whose rootfs carries the snapshotter's marker boots the enclave, which
attests, pulls and runs the tenant's image with its own command; an ordinary bundle runs through runc unchanged."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sealpod.oci.localregistry import LocalRegistry
from tests.conftest import need
from tests.e2e.pool import Pool
from tests.e2e.test_run import CONFIG, RUN_POLICY, _deploy
from tests.kbs.conftest import KbsProcess

RUNTIME = str(Path(sys.executable).with_name("sealpod-runtime"))
KUBELET_ENV = ["KUBERNETES_SERVICE_HOST=10.0.0.1", "HOSTNAME=pod-a"]


def _bundle(tmp_path: Path, name: str, *, image: str | None, args: list[str], env: list[str]) -> Path:
    bundle = tmp_path / name
    rootfs = bundle / "rootfs"
    rootfs.mkdir(parents=True)
    annotations = {"io.kubernetes.cri.container-type": "container"}
    if image:
        (rootfs / ".sealpod").mkdir()
        (rootfs / ".sealpod" / "image.json").write_text(json.dumps({"image": image, "manifest": "sha256:" + "0" * 64}))
        annotations["io.kubernetes.cri.image-name"] = image
    else:
        (rootfs / "bin").mkdir()
        (rootfs / "bin" / "busybox").write_bytes(Path(need("busybox")).resolve().read_bytes())
        (rootfs / "bin" / "busybox").chmod(0o755)
    subprocess.run(["runc", "spec", "--bundle", str(bundle)], check=True)
    spec = json.loads((bundle / "config.json").read_text())
    spec["process"].update(args=args, env=env, terminal=False)
    spec["hostname"] = "pod-a"
    spec["annotations"] = annotations
    (bundle / "config.json").write_text(json.dumps(spec))
    return bundle


def _shim(tmp_path: Path, bundle: Path, node: dict[str, str], container_id: str) -> tuple[dict[str, object], str]:
    log = bundle / "container.log"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.runtime.shim",
            RUNTIME,
            str(tmp_path / "runtime-root"),
            str(bundle),
            container_id,
            str(log),
        ],
        capture_output=True,
        text=True,
        env=node,
        timeout=180,
        check=True,
        cwd=Path(__file__).parents[2],
    )
    return json.loads(proc.stdout), log.read_text()


@pytest.fixture
def runtime_node(node: dict[str, str], tmp_path: Path) -> Callable[[str], dict[str, str]]:
    """The node's runtime config for a KBS url."""

    def configure(kbs_url: str) -> dict[str, str]:
        config = tmp_path / "runtime.toml"
        config.write_text(
            f'kbs_url = "{kbs_url}"\nallow_sim = true\nregistry_tls_verify = false\nrootfs = "memory"\n'
            f'state_dir = "{node["SEALPOD_STATE_DIR"]}"\n'
        )
        return {**node, "SEALPOD_RUNTIME_CONFIG": str(config)}

    return configure


def _run_the_image(
    tmp_path: Path, registry: LocalRegistry, server: KbsProcess, node: dict[str, str], env: dict[str, str]
) -> tuple[str, list[str], dict[str, object], str]:
    """The tenant's image deployed and run as container c1 of bundle b1 through the shim: the image, its argv, the
    shim's report and the container's log, with what every such run shows checked."""
    image = _deploy(tmp_path, registry, server, node)
    image_argv = [*CONFIG["Entrypoint"], *CONFIG["Cmd"]]  # type: ignore[misc]
    bundle = _bundle(tmp_path, "b1", image=image, args=image_argv, env=[*CONFIG["Env"], *KUBELET_ENV])  # type: ignore[misc]
    report, log = _shim(tmp_path, bundle, env, "c1")
    assert report["create"] == 0, log
    assert report["state"] == "created"  # the enclave waits on the start FIFO
    assert report["start"] == 0, report["start_error"]
    assert report["exit"] == 7, log  # the workload's own status, through the enclave
    assert report["state_after"] == "stopped"
    assert report["delete"] == 0
    assert "user=1000:1000" in log
    assert "cwd=/app" in log
    assert "pid=1" in log
    assert "host=pod-a" in log
    # the kubelet's variables are not the tenant's: no run policy lets them in, so they are dropped, not refused
    assert "drops the host's variables KUBERNETES_SERVICE_HOST, HOSTNAME" in log
    assert not (tmp_path / "runtime-root" / "c1").exists()
    return image, image_argv, report, log


def test_a_sealpod_bundle_boots_the_enclave_with_the_pods_command(
    registry: LocalRegistry,
    kbs_factory: Callable[..., KbsProcess],
    node: dict[str, str],
    runtime_node: Callable[[str], dict[str, str]],
    tmp_path: Path,
) -> None:
    server = kbs_factory()
    _run_the_image(tmp_path, registry, server, node, runtime_node(server.url))


def test_with_the_node_s_enclave_pool_a_container_runs_in_a_pre_launched_enclave(
    registry: LocalRegistry,
    kbs_factory: Callable[..., KbsProcess],
    node: dict[str, str],
    runtime_node: Callable[[str], dict[str, str]],
    pool: Pool,
    tmp_path: Path,
) -> None:
    server = kbs_factory()
    env = runtime_node(server.url)
    image, image_argv, _, _ = _run_the_image(tmp_path, registry, server, node, env)
    (enclave,) = pool.handed_over()  # the shim reaped the runtime's fork that held the pool's connection
    assert not Path(f"/proc/{enclave}").exists() or "Z" in Path(f"/proc/{enclave}/stat").read_text().split(")")[1]

    # the node's config can keep containers out of the pool
    config = Path(env["SEALPOD_RUNTIME_CONFIG"])
    config.write_text(config.read_text() + "use_pool = false\n")
    report, log = _shim(tmp_path, _bundle(tmp_path, "b2", image=image, args=image_argv, env=[]), env, "c2")
    assert report["exit"] == 7, log
    assert len(pool.handed_over()) == 1


def test_a_pod_command_the_run_policy_does_not_allow_is_refused_before_the_workload(
    registry: LocalRegistry,
    kbs_factory: Callable[..., KbsProcess],
    node: dict[str, str],
    runtime_node: Callable[[str], dict[str, str]],
    tmp_path: Path,
) -> None:
    server = kbs_factory()
    image = _deploy(tmp_path, registry, server, node)
    env = runtime_node(server.url)
    bundle = _bundle(tmp_path, "b2", image=image, args=["/bin/sh", "-c", "echo OVERRIDDEN"], env=[])

    report, log = _shim(tmp_path, bundle, env, "c2")

    assert report["create"] == 0, log
    assert report["exit"] == 125
    assert "OVERRIDDEN" not in log.replace("echo OVERRIDDEN", "")
    assert "the pod spec replaces the image's command" in log
    assert "run policy does not allow it" in log


def test_a_pod_command_the_run_policy_allows_runs(
    registry: LocalRegistry,
    kbs_factory: Callable[..., KbsProcess],
    node: dict[str, str],
    runtime_node: Callable[[str], dict[str, str]],
    tmp_path: Path,
) -> None:
    server = kbs_factory()
    image = _deploy(tmp_path, registry, server, node, run_policy=RUN_POLICY)
    env = runtime_node(server.url)
    bundle = _bundle(tmp_path, "b3", image=image, args=["/bin/sh", "-c", "echo X=$X; exit 3"], env=["X=from-pod"])

    report, log = _shim(tmp_path, bundle, env, "c3")

    assert report["exit"] == 3, log
    assert "X=from-pod" in log


def test_an_ordinary_bundle_runs_through_runc(
    node: dict[str, str], runtime_node: Callable[[str], dict[str, str]], tmp_path: Path
) -> None:
    env = runtime_node("http://127.0.0.1:9")  # never contacted: this is runc's container
    bundle = _bundle(
        tmp_path, "plain", image=None, args=["/bin/busybox", "sh", "-c", "echo plain-runc; exit 4"], env=[]
    )

    report, log = _shim(tmp_path, bundle, env, "p1")

    assert report == {
        "create": 0,
        "state": "created",
        "start": 0,
        "start_error": "",
        "exit": 4,
        "state_after": "stopped",
        "delete": 0,
    }, log
    assert "plain-runc" in log
    assert not (tmp_path / "runtime-root" / "p1").exists()


def test_exec_into_an_enclave_container_is_refused_and_a_dead_enclave_cannot_start(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "x1").mkdir(parents=True)
    (root / "x1" / "sealpod.json").write_text(
        json.dumps({"id": "x1", "bundle": str(tmp_path), "created": "now", "pid": 0, "pid_start": None})
    )
    (root / "x1" / "start").touch()
    for args, message in (
        (["exec", "--process", "p.json", "x1"], "exec is refused for sealpod containers"),
        (["start", "x1"], "cannot start a container that is stopped"),
        (["kill", "x1", "9"], "container not running"),
    ):
        proc = subprocess.run(
            [RUNTIME, "--root", str(root), "--log", str(tmp_path / "log.json"), "--log-format", "json", *args],
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 1
        assert message in proc.stderr
        last = json.loads((tmp_path / "log.json").read_text().splitlines()[-1])
        assert last["level"] == "error"
        assert message in last["msg"]


def _record(root: Path, container_id: str, pid: int, *, started: bool) -> None:
    stat = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    directory = root / container_id
    directory.mkdir(parents=True)
    record = {"id": container_id, "bundle": str(root), "created": "now", "pid": pid, "pid_start": stat[19]}
    (directory / "sealpod.json").write_text(json.dumps(record))
    if started:
        (directory / "started").touch()


def _runtime(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RUNTIME, "--root", str(root), *args], capture_output=True, text=True, check=False)


def test_delete_destroys_a_created_container_and_needs_force_for_a_running_one(tmp_path: Path) -> None:
    root = tmp_path / "root"
    created = subprocess.Popen(["sleep", "60"], start_new_session=True)
    running = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        _record(root, "created1", created.pid, started=False)
        _record(root, "running1", running.pid, started=True)
        assert json.loads(_runtime(root, "state", "created1").stdout)["status"] == "created"
        assert json.loads(_runtime(root, "state", "running1").stdout)["status"] == "running"

        assert _runtime(root, "delete", "created1").returncode == 0  # as runc: a created container is destroyed
        assert created.wait(10) == -9
        assert not (root / "created1").exists()

        refused = _runtime(root, "delete", "running1")
        assert refused.returncode == 1
        assert "not stopped: running" in refused.stderr
        assert running.poll() is None
        assert _runtime(root, "delete", "--force", "running1").returncode == 0
        assert running.wait(10) == -9
        assert not (root / "running1").exists()
    finally:
        for process in (created, running):
            process.kill()
            process.wait()


def test_a_malformed_record_is_refused_by_name(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "bad1").mkdir(parents=True)
    (root / "bad1" / "sealpod.json").write_text(json.dumps({"id": "bad1", "surprise": 1}))
    proc = _runtime(root, "state", "bad1")
    assert proc.returncode == 1
    assert "malformed record" in proc.stderr


def test_a_failed_create_leaves_no_record_and_no_enclave(
    node: dict[str, str], runtime_node: Callable[[str], dict[str, str]], tmp_path: Path
) -> None:
    # a "KBS" that accepts connections and never answers: the enclave would wait on it, alive, if create let it be
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    env = runtime_node(f"http://127.0.0.1:{silent.getsockname()[1]}")
    bundle = _bundle(tmp_path, "b9", image="127.0.0.1:9/tenant/app:v1", args=["/bin/sh"], env=[])
    spec = json.loads((bundle / "config.json").read_text())
    spec["hostname"] = "failed-create-4f1e"
    (bundle / "config.json").write_text(json.dumps(spec))
    root = tmp_path / "runtime-root"
    output = tmp_path / "create.out"
    with output.open("w") as out:  # a file, not a pipe: a surviving enclave must not hold the test's read open
        code = subprocess.run(
            [RUNTIME, "--root", str(root), "create", "--bundle", str(bundle), "--pid-file", "/nonexistent/pid", "c9"],
            stdout=out,
            stderr=out,
            env=env,
            check=False,
        ).returncode
    assert code == 1
    assert "No such file or directory" in output.read_text()
    assert not (root / "c9").exists()
    time.sleep(0.5)  # long enough for a surviving enclave to show up
    survivors = subprocess.run(["pgrep", "-f", "failed-create-4f1e"], capture_output=True, text=True, check=False)
    silent.close()
    assert survivors.stdout == ""
