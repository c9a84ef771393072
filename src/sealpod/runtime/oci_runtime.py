"""``sealpod-runtime``: a runc-compatible OCI runtime for containerd (set it as a runtime handler's ``BinaryName``).

An application container whose rootfs carries the sealpod snapshotter's marker (a sealpod image: containerd did not
pull its layers) is booted in the generic enclave, which attests, pulls, verifies, decrypts and runs the image itself;
everything else (the pod's pause sandbox, ordinary images) is handed to runc unchanged, with the same arguments. The
enclave containers answer ``create``, ``start``, ``state``, ``kill``, ``delete`` and ``ps`` as runc does; ``exec``,
``update``, ``pause``, ``checkpoint`` are refused: the host does not reach into an enclave.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from _socket import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

from sealpod._internal.cgroups import kill_container, remove_container
from sealpod.boundary.request import BootRequest
from sealpod.config import state_dir
from sealpod.errors import SealpodError
from sealpod.runtime.launch import enclave_command
from sealpod.runtime.node_config import NodeConfig
from sealpod.runtime.oci_bundle import Bundle
from sealpod.runtime.oci_invocation import ANSWERED, REFUSED, Invocation
from sealpod.runtime.oci_state import EnclaveContainer
from sealpod.runtime.pool_client import connect, run_on


def _log_error(invocation: Invocation, message: str) -> None:
    """Report an error where containerd's shim looks for it (``--log``, JSON lines) and on stderr."""
    log = invocation.global_flags.get("--log")
    if log:
        entry = {"level": "error", "msg": message, "time": datetime.now(UTC).isoformat()}
        line = json.dumps(entry) if invocation.global_flags.get("--log-format") == "json" else message
        try:
            with open(log, "a") as handle:
                handle.write(line + "\n")
        except OSError:
            pass
    print(f"sealpod-runtime: {message}", file=sys.stderr)


def _exec_runc(config: NodeConfig, argv: list[str]) -> NoReturn:
    try:
        os.execv(config.runc, [config.runc, *argv])  # noqa: S606 - runc, with the arguments containerd gave
    except OSError as err:
        raise SealpodError(
            f"cannot run runc {config.runc} for a container that is not an enclave's: {err.strerror}",
            hint="install runc, or set runc = PATH in the sealpod runtime config",
        ) from None


def _write_pid_file(path: str, pid: int) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as handle:
        handle.write(str(pid))
    os.rename(tmp, path)


def create(invocation: Invocation, config: NodeConfig, bundle: Bundle, image: str) -> None:
    """Start the enclave for ``image``: it attests and pulls now, and waits for ``start`` to run the workload."""
    container_id = invocation.container_id()
    if bundle.terminal() or invocation.flags.get("--console-socket"):
        raise SealpodError("a sealpod container cannot have a terminal (tty: true); its stdio is passed through")
    kbs_url = config.require_kbs()
    directory = EnclaveContainer.directory_for(invocation.root, container_id)
    try:
        directory.mkdir(parents=True, mode=0o711)
    except FileExistsError:
        raise SealpodError(f"container with id {container_id} exists already") from None
    record = EnclaveContainer(
        id=container_id,
        bundle=str(bundle.path),
        created=datetime.now(UTC).isoformat(),
        annotations=bundle.annotations,
        cgroup_path=bundle.cgroups_path(),
    )
    pid: int | None = None
    try:
        start_fd = record.open_start_fifo(invocation.root)
        request = BootRequest(
            image=image,
            kbs_url=kbs_url,
            name=bundle.hostname() or container_id[:12],
            allow_sim=config.allow_sim,
            registry_tls_verify=config.registry_tls_verify,
            kbs_ca_file=config.kbs_ca_file,
            policy_uri=config.policy_uri,
            rootfs=config.rootfs,
            memory=bundle.memory_limit(),
            pids=bundle.pids_limit(),
            argv=bundle.argv(),
            host_env=bundle.env(),
            netns=bundle.network_namespace(),
            start_fd=start_fd,
            cgroup_path=bundle.cgroups_path(),
            init_data=bundle.init_data(),
            volumes=bundle.volumes(),
        )
        connection = _pool_connection(config)
        if connection is not None:
            pid = _start_pooled(connection, request, start_fd)
        else:
            env = dict(os.environ)
            if config.state_dir:
                env["SEALPOD_STATE_DIR"] = config.state_dir
            process = subprocess.Popen(
                enclave_command(request), pass_fds=(start_fd,), start_new_session=True, cwd=bundle.path, env=env
            )
            pid = process.pid
        os.close(start_fd)
        record.record_pid(pid)
        record.save(invocation.root)
        pid_file = invocation.flags.get("--pid-file")
        if pid_file:
            _write_pid_file(pid_file, pid)
    except BaseException:
        if pid is not None:  # nothing half-made survives a failed create: the enclave goes too
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        if record.cgroup_path:
            remove_container(record.cgroup_path)
        record.remove(invocation.root)
        raise


def _pool_connection(config: NodeConfig) -> socket | None:
    """A connection to the node's enclave pool, when the config lets containers use it and it listens."""
    if not config.use_pool:
        return None
    directory = Path(config.state_dir) if config.state_dir else state_dir()
    return connect(str(directory / "enclave-pool.sock"))


def _start_pooled(connection: socket, request: BootRequest, start_fd: int) -> int:
    """Fork the container's process for a pre-launched enclave: it hands the enclave the request, its stdio (the
    container's) and the start FIFO, forwards signals to it and exits with the workload's status, so that the shim
    adopts and reaps it as it would a fresh enclave. Returns its pid."""
    pid = os.fork()
    if pid == 0:
        code = 125
        try:
            os.setsid()
            code = run_on(connection, request, start_fifo=start_fd)
        except (SealpodError, OSError) as err:
            print(f"sealpod-runtime: {err}", file=sys.stderr)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    connection.close()
    return pid


def start(invocation: Invocation, record: EnclaveContainer) -> None:
    """Let the enclave run its workload."""
    status = record.status(invocation.root)
    if status != "created":
        raise SealpodError(f"cannot start a container that is {status}")
    record.signal_start(invocation.root)


def state(invocation: Invocation, record: EnclaveContainer) -> None:
    """Print the container's state as runc does."""
    status = record.status(invocation.root)
    print(
        json.dumps(
            {
                "ociVersion": "1.0.2",
                "id": record.id,
                "pid": record.pid if status != "stopped" else 0,
                "status": status,
                "bundle": record.bundle,
                "rootfs": str(Path(record.bundle) / "rootfs"),
                "created": record.created,
                "owner": "",
                "annotations": record.annotations,
            },
            indent=2,
        )
    )


def _signal_number(text: str) -> int:
    if text.isdigit():
        return int(text)
    name = text.upper()
    name = name if name.startswith("SIG") else f"SIG{name}"
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise SealpodError(f"unknown signal {text!r}") from None


def kill(invocation: Invocation, record: EnclaveContainer) -> None:
    """Signal the enclave (it forwards SIGTERM, SIGINT and SIGHUP to the workload; SIGKILL ends both)."""
    signum = _signal_number(invocation.args[1] if len(invocation.args) > 1 else "SIGTERM")
    if not record.alive():
        raise SealpodError("container not running")
    try:
        if invocation.flags.get("--all") == "true":
            os.killpg(record.pid, signum)
        else:
            os.kill(record.pid, signum)
    except ProcessLookupError:
        raise SealpodError("container not running") from None


def delete(invocation: Invocation, record: EnclaveContainer) -> None:
    """Forget a container: a stopped one, or a created one that never started (its enclave is killed, as runc
    destroys a created container); a running one only with ``--force``."""
    status = record.status(invocation.root)
    if status == "running" and invocation.flags.get("--force") != "true":
        raise SealpodError(f"cannot delete container {record.id} that is not stopped: {status}")
    if status != "stopped":
        with contextlib.suppress(ProcessLookupError):
            os.killpg(record.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while record.alive() and time.monotonic() < deadline:
            time.sleep(0.01)
    if record.cgroup_path:
        kill_container(record.cgroup_path)  # a pre-launched enclave is in it, not in the process group above
        remove_container(record.cgroup_path)
    record.remove(invocation.root)


def ps(record: EnclaveContainer) -> None:
    """The container's processes as the host may know them: the enclave."""
    print(json.dumps([record.pid] if record.alive() else []))


def dispatch(argv: list[str]) -> None:
    """Run one runtime command: an enclave container's, or runc's."""
    invocation = Invocation.parse(argv)
    config = NodeConfig.load()
    if invocation.command == "create":
        bundle = Bundle.load(Path(invocation.bundle_name))
        image = bundle.sealpod_image()
        if image is None:
            _exec_runc(config, argv)
        create(invocation, config, bundle, image)
        return
    if not invocation.args or invocation.command not in ANSWERED | REFUSED:
        _exec_runc(config, argv)
    record = EnclaveContainer.find(invocation.root, invocation.container_id())
    if record is None:
        _exec_runc(config, argv)
    if invocation.command in REFUSED:
        raise SealpodError(
            f"{invocation.command} is refused for sealpod containers: the host does not reach into an enclave"
        )
    {
        "start": lambda: start(invocation, record),
        "state": lambda: state(invocation, record),
        "kill": lambda: kill(invocation, record),
        "delete": lambda: delete(invocation, record),
        "ps": lambda: ps(record),
    }[invocation.command]()


def main() -> None:
    """The ``sealpod-runtime`` entry point."""
    argv = sys.argv[1:]
    try:
        dispatch(argv)
    except SealpodError as err:
        _log_error(Invocation.parse(argv), str(err))
        sys.exit(1)
    except OSError as err:
        _log_error(Invocation.parse(argv), f"{err}")
        sys.exit(1)


if __name__ == "__main__":
    main()
