"""A real containerd 1.6 (Debian's) for CRI tests, and a small kubelet-like CRI client to drive it.

:class:`Containerd` runs ``/usr/bin/containerd`` with its own config, root, state and socket under a test's
directory. It stays in the host network namespace (so it, its shims and runtimes reach servers on 127.0.0.1) but
runs in a private mount namespace: ``/run`` and ``/var/lib`` there are tmpfs unions of the host's entries (bound
back in) plus the directories containerd and CNI insist on (``/run/containerd``, ``/run/netns``, ``/var/lib/cni``),
so every mount it makes (snapshots, netns, shim state) disappears with that namespace and the host stays untouched.
Pods get their own network namespace on a CNI bridge with a unique name. :meth:`Containerd.stop` removes pods,
stops containerd, kills whatever is left in its mount namespace (shims, containers), deletes the bridge and the
cgroups, and raises if anything survived.

:class:`CriClient` speaks CRI ``runtime.v1`` over the unix socket as kubelet would: it remembers each pod's
sandbox config to send with CreateContainer, lays out ``<log dir>/<container>/<attempt>.log`` and reads the CRI
log format.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import grpc

from sealpod.oci.auth import Credentials
from sealpod.oci.copy import copy_image
from sealpod.oci.platform import parse_platform
from sealpod.oci.reference import parse_reference
from sealpod.oci.source import LayoutStore, RegistryOptions, RegistryStore
from tests.cri.proto import cri_subset_pb2 as pb
from tests.cri.proto import cri_subset_pb2_grpc as pb_grpc
from tests.helpers import E, image_from_tars, make_tar

CONTAINERD = "/usr/bin/containerd"
RUNC = "/usr/sbin/runc"
CNI_BIN_DIR = "/usr/lib/cni"
BUSYBOX = "/bin/busybox"
RUNC_V2 = "io.containerd.runc.v2"
K8S_NAMESPACE = "k8s.io"
CGROUP_ROOT = Path("/sys/fs/cgroup")
SOCKET_PATH_MAX = 100  # sun_path is 108 bytes; containerd also needs "<socket>.ttrpc"

# Run inside `unshare --mount --propagation private`: $1 is a scratch directory, the rest the containerd command.
# union DIR NEW... hides DIR under a tmpfs holding bind mounts of DIR's entries plus the NEW directories. `mount -n`
# and LIBMOUNT_UTAB keep util-linux from writing /run/mount/utab on the host before /run is covered.
_NAMESPACE_SCRIPT = r"""
set -eu
scratch=$1
shift
union() {
    dir=$1
    shift
    top=$(mktemp -d -p "$scratch")
    mount -n -t tmpfs -o mode=0755 tmpfs "$top"
    for entry in "$dir"/* "$dir"/.[!.]*; do
        [ -e "$entry" ] || [ -L "$entry" ] || continue
        name=${entry##*/}
        if [ -L "$entry" ]; then
            cp -P "$entry" "$top/$name"
        elif [ -d "$entry" ]; then
            mkdir "$top/$name"
            mount -n --rbind "$entry" "$top/$name"
        else
            : > "$top/$name"
            mount -n --bind "$entry" "$top/$name"
        fi
    done
    for name in "$@"; do
        mkdir -p "$top/$name"
    done
    mount -n --move "$top" "$dir"
}
union /run containerd netns
union /var/lib cni
exec "$@"
"""


class ContainerdError(RuntimeError):
    """containerd failed to start, or left something behind when stopped."""


class CriError(RuntimeError):
    """A CRI call failed; ``code`` is the gRPC status code."""

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.code = code


@dataclasses.dataclass(frozen=True)
class RuntimeHandler:
    """A CRI runtime handler (``containerd.runtimes.<name>``): by default runc.v2's shim running ``binary_name``
    instead of runc, with every pod annotation passed into the OCI spec."""

    binary_name: str | None = None
    runtime_type: str = RUNC_V2
    pod_annotations: tuple[str, ...] = ("*",)
    container_annotations: tuple[str, ...] = ()
    shim_path: str | None = None  # runtime_path: a shim binary other than containerd-shim-<type>
    options: Mapping[str, str | int | bool] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Registry:
    """How CRI reaches one registry host (as written in image references): a hosts.toml in ``config_path``.

    The default is plain HTTP to the host itself; ``auth`` becomes ``registry.configs.<server host>.auth`` (used
    when a PullImage carries no credentials of its own).
    """

    host: str
    server: str | None = None
    ca_file: Path | None = None
    skip_verify: bool = False
    auth: tuple[str, str] | None = None

    @property
    def server_host(self) -> str:
        """The host:port containerd actually contacts (which its credentials lookup is keyed by)."""
        return urlsplit(self.server).netloc if self.server else self.host

    def hosts_toml(self) -> str:
        server = self.server or f"http://{self.host}"
        lines = [f"server = {_q(server)}", "", f"[host.{_q(server)}]", '  capabilities = ["pull", "resolve"]']
        if self.ca_file is not None:
            lines.append(f"  ca = {_q(str(self.ca_file))}")
        if self.skip_verify:
            lines.append("  skip_verify = true")
        return "\n".join(lines) + "\n"


@dataclasses.dataclass(frozen=True)
class LogLine:
    """One line of a CRI container log (``<RFC3339Nano time> <stream> <P|F> <text>``, partial lines joined)."""

    time: str
    stream: str
    text: str


def _q(value: str) -> str:
    """A TOML basic string (JSON's escapes are valid TOML)."""
    return json.dumps(value)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _q(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(text.splitlines()[-lines:])


def _pick_subnet() -> ipaddress.IPv4Network:
    """A random 10.x.y.0/24 that no route on this host covers."""
    routes = subprocess.run(["ip", "-4", "route", "show"], capture_output=True, text=True, check=True).stdout
    taken = []
    for line in routes.splitlines():
        target = line.split()[0]
        if target != "default":
            with contextlib.suppress(ValueError):
                taken.append(ipaddress.ip_network(target, strict=False))
    for _ in range(100):
        subnet = ipaddress.IPv4Network(f"10.{200 + secrets.randbelow(55)}.{secrets.randbelow(256)}.0/24")
        if not any(subnet.overlaps(other) for other in taken):
            return subnet
    raise ContainerdError("no free 10.x.y.0/24 subnet for the CNI bridge")


class Containerd:
    """Debian's containerd with its own config, root, state and socket under ``base``; a context manager."""

    def __init__(
        self,
        base: Path,
        *,
        sandbox_image: str,
        registries: Iterable[Registry | str] = (),
        runtimes: Mapping[str, RuntimeHandler | str] | None = None,
        snapshotter: str = "overlayfs",
        proxy_plugins: Mapping[str, tuple[str, str]] | None = None,
        extra_config: str = "",
        log_level: str = "info",
        start_timeout: float = 30.0,
    ) -> None:
        """``runtimes`` adds handlers (a name to a RuntimeHandler, or to a BinaryName path for runc.v2) to the
        default ``runc``; ``proxy_plugins`` maps a name to (type, unix socket address), e.g. ("snapshot", path);
        ``extra_config`` is TOML appended to config.toml (new tables only, e.g. ``[stream_processors...]``)."""
        self.base = base
        self.sandbox_image = sandbox_image
        self.registries = [Registry(r) if isinstance(r, str) else r for r in registries]
        self.runtimes = {
            name: RuntimeHandler(binary_name=h) if isinstance(h, str) else h for name, h in (runtimes or {}).items()
        }
        self.snapshotter = snapshotter
        self.proxy_plugins = dict(proxy_plugins or {})
        self.extra_config = extra_config
        self.log_level = log_level
        self.start_timeout = start_timeout
        self.root = base / "root"
        self.state = base / "state"
        self.socket = base / "containerd.sock"
        self.config_path = base / "config.toml"
        self.log_path = base / "containerd.log"
        self.pod_logs = base / "pods"
        self.cni_conf_dir = base / "cni" / "net.d"
        self.cni_data_dir = base / "cni" / "ipam"
        self.certs_dir = base / "certs.d"
        token = secrets.token_hex(4)
        self.bridge = f"spcni{token}"
        self.cgroup_parent = f"/sealpod-cri-{token}"
        self.subnet: ipaddress.IPv4Network | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.mount_namespace: str | None = None
        self.ready = False
        self._client: CriClient | None = None

    # ---- configuration

    def _config_toml(self) -> str:
        cri = '[plugins."io.containerd.grpc.v1.cri"]'
        runtimes = {"runc": RuntimeHandler(binary_name=RUNC, pod_annotations=()), **self.runtimes}
        out = [
            "version = 2",
            f"root = {_q(str(self.root))}",
            f"state = {_q(str(self.state))}",
            "oom_score = 0",
            'disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",'
            ' "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]',
            "",
            "[grpc]",
            f"  address = {_q(str(self.socket))}",
            "[ttrpc]",
            f"  address = {_q(str(self.socket) + '.ttrpc')}",
            "[debug]",
            f"  level = {_q(self.log_level)}",
            "",
            '[plugins."io.containerd.internal.v1.opt"]',
            f"  path = {_q(str(self.base / 'opt'))}",
            "",
            cri,
            f"  sandbox_image = {_q(self.sandbox_image)}",
            "  restrict_oom_score_adj = true",
            "  disable_tcp_service = true",
            '  stream_server_address = "127.0.0.1"',
            '  stream_server_port = "0"',
            "  enable_selinux = false",
            f"{cri[:-1]}.containerd]",
            f"  snapshotter = {_q(self.snapshotter)}",
            '  default_runtime_name = "runc"',
            "  disable_snapshot_annotations = false",
        ]
        for name, handler in runtimes.items():
            table = f"{cri[:-1]}.containerd.runtimes.{_q(name)}]"
            out += [table, f"  runtime_type = {_q(handler.runtime_type)}"]
            if handler.shim_path:
                out.append(f"  runtime_path = {_q(handler.shim_path)}")
            out.append(f"  pod_annotations = {_toml_value(handler.pod_annotations)}")
            out.append(f"  container_annotations = {_toml_value(handler.container_annotations)}")
            options: dict[str, object] = dict(handler.options)
            if handler.binary_name:
                options.setdefault("BinaryName", handler.binary_name)
            if options:
                out.append(f"{table[:-1]}.options]")
                out += [f"  {key} = {_toml_value(value)}" for key, value in options.items()]
        out += [
            f"{cri[:-1]}.cni]",
            f"  bin_dir = {_q(CNI_BIN_DIR)}",
            f"  conf_dir = {_q(str(self.cni_conf_dir))}",
            "  max_conf_num = 1",
            f"{cri[:-1]}.registry]",
            f"  config_path = {_q(str(self.certs_dir))}",
        ]
        for registry in self.registries:
            if registry.auth is not None:
                out += [
                    f"{cri[:-1]}.registry.configs.{_q(registry.server_host)}.auth]",
                    f"  username = {_q(registry.auth[0])}",
                    f"  password = {_q(registry.auth[1])}",
                ]
        for name, (kind, address) in self.proxy_plugins.items():
            out += [f"[proxy_plugins.{_q(name)}]", f"  type = {_q(kind)}", f"  address = {_q(address)}"]
        return "\n".join(out) + "\n\n" + self.extra_config + "\n"

    def _cni_conflist(self) -> str:
        assert self.subnet is not None
        return json.dumps(
            {
                "cniVersion": "1.0.0",
                "name": "sealpod-cri-test",
                "plugins": [
                    {
                        "type": "bridge",
                        "bridge": self.bridge,
                        "isGateway": False,
                        "ipMasq": False,
                        "hairpinMode": False,
                        "ipam": {
                            "type": "host-local",
                            "ranges": [[{"subnet": str(self.subnet)}]],
                            "dataDir": str(self.cni_data_dir),
                        },
                    }
                ],
            },
            indent=2,
        )

    def write_config(self) -> None:
        """Write config.toml, the CNI network and the registry hosts files."""
        if len(str(self.socket)) > SOCKET_PATH_MAX:
            raise ContainerdError(f"socket path too long for a unix socket ({len(str(self.socket))}): {self.socket}")
        for path in (self.root, self.state, self.pod_logs, self.cni_conf_dir, self.cni_data_dir, self.certs_dir):
            path.mkdir(parents=True, exist_ok=True)
        (self.base / "tmp").mkdir(exist_ok=True)
        (self.base / "scratch").mkdir(exist_ok=True)
        self.subnet = self.subnet or _pick_subnet()
        (self.cni_conf_dir / "10-sealpod.conflist").write_text(self._cni_conflist())
        for registry in self.registries:
            host_dir = self.certs_dir / registry.host
            host_dir.mkdir(parents=True, exist_ok=True)
            (host_dir / "hosts.toml").write_text(registry.hosts_toml())
        self.config_path.write_text(self._config_toml())

    # ---- lifecycle

    @staticmethod
    def check_prerequisites() -> None:
        """Fail clearly when not root or when containerd, runc, the CNI plugins or the tools are missing."""
        if os.geteuid() != 0:
            raise ContainerdError("the containerd harness needs root (mounts, network and cgroups)")
        missing = [
            p for p in (CONTAINERD, RUNC, f"{CNI_BIN_DIR}/bridge", f"{CNI_BIN_DIR}/host-local") if not Path(p).exists()
        ]
        missing += [tool for tool in ("unshare", "ip", "containerd-shim-runc-v2") if shutil.which(tool) is None]
        if missing:
            raise ContainerdError(
                f"missing {', '.join(missing)}: apt-get install containerd runc containernetworking-plugins"
            )

    def start(self) -> Containerd:
        """Start containerd and wait until CRI reports the runtime and the network ready."""
        self.check_prerequisites()
        self.write_config()
        env = {
            key: value
            for key, value in os.environ.items()
            if key.lower() not in ("http_proxy", "https_proxy", "no_proxy", "all_proxy")
        }
        env.update(
            PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            TMPDIR=str(self.base / "tmp"),
            LIBMOUNT_UTAB=str(self.base / "scratch" / "utab"),
        )
        command = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", _NAMESPACE_SCRIPT, "sh"]
        command += [str(self.base / "scratch"), CONTAINERD, "--config", str(self.config_path)]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop(check=False)
            raise
        return self

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.start_timeout
        last = "socket not created"
        while time.monotonic() < deadline:
            self._note_namespace()
            if self.process.poll() is not None:
                raise ContainerdError(
                    f"containerd exited with {self.process.returncode} while starting; "
                    f"the end of {self.log_path}:\n{self.log_tail()}"
                )
            if self.socket.exists():
                try:
                    conditions = self.client().status()
                except CriError as exc:
                    if exc.code == grpc.StatusCode.UNIMPLEMENTED:
                        raise ContainerdError(
                            f"containerd runs without its CRI plugin; the end of {self.log_path}:\n{self.log_tail()}"
                        ) from None
                    last = str(exc)
                else:
                    if conditions.get("RuntimeReady") and conditions.get("NetworkReady"):
                        if self.mount_namespace is None:
                            raise ContainerdError("containerd does not run in a mount namespace of its own")
                        self.ready = True
                        return
                    last = f"CRI status {conditions}"
            time.sleep(0.1)
        raise ContainerdError(
            f"containerd was not ready within {self.start_timeout} s ({last}); "
            f"the end of {self.log_path}:\n{self.log_tail()}"
        )

    def _note_namespace(self) -> None:
        """Remember containerd's mount namespace as soon as ``unshare`` has made it: teardown finds shims by it."""
        if self.mount_namespace is not None or self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(OSError):
            namespace = os.readlink(f"/proc/{self.process.pid}/ns/mnt")
            if namespace != os.readlink("/proc/self/ns/mnt"):
                self.mount_namespace = namespace

    def ctr(self, *args: str, namespace: str = K8S_NAMESPACE) -> str:
        """Run ``ctr`` against this containerd (CRI's namespace by default); returns its output."""
        command = ["ctr", "--address", str(self.socket), "--namespace", namespace, *args]
        proc = subprocess.run(command, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise ContainerdError(f"{' '.join(command)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc.stdout

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of containerd's log."""
        return _tail(self.log_path, lines)

    def client(self) -> CriClient:
        """The CRI client of this containerd (one, shared)."""
        if self._client is None:
            self._client = CriClient(
                self.socket, log_root=self.pod_logs, cgroup_parent=self.cgroup_parent, diagnostics=self.log_tail
            )
        return self._client

    def stop(self, *, check: bool = True) -> None:
        """Tear everything down: pods (through CRI), containerd, leftover shims and containers, the CNI bridge and
        the cgroups. Raise if something survived, or only warn when ``check`` is false (a test already failed)."""
        problems: list[str] = []
        self._note_namespace()
        if self.ready and self.process is not None and self.process.poll() is None and self._client is not None:
            try:
                self._client.remove_everything(timeout=30)
            except CriError as exc:
                problems.append(f"removing pods through CRI failed: {exc}")
        if self._client is not None:
            self._client.close()
            self._client = None
        if self.process is not None:
            if self.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    self.process.terminate()
                try:
                    self.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    problems.append("containerd ignored SIGTERM for 10 s")
                    self.process.kill()
                    self.process.wait()
            self.process = None
        self.ready = False
        if self.mount_namespace is not None:
            survivors = self._kill_namespace(self.mount_namespace)
            if survivors:
                problems.append(f"processes still alive in containerd's mount namespace: {survivors}")
        if Path(f"/sys/class/net/{self.bridge}").exists():
            subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, check=False)
            if Path(f"/sys/class/net/{self.bridge}").exists():
                problems.append(f"bridge {self.bridge} could not be deleted")
        problems += self._remove_cgroups()
        if problems:
            message = "containerd teardown: " + "; ".join(problems)
            if check:
                raise ContainerdError(message)
            warnings.warn(message, stacklevel=2)

    def _kill_namespace(self, namespace: str, timeout: float = 10.0) -> list[int]:
        """SIGKILL every process in ``namespace`` (shims, runc) and their descendants (containers); return the
        pids still there after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            victims = self.leftover_processes(namespace)
            if not victims or time.monotonic() > deadline:
                return victims
            for pid in victims:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)

    @staticmethod
    def leftover_processes(namespace: str) -> list[int]:
        """Live processes in mount namespace ``namespace`` (e.g. ``mnt:[4026532301]``) and their descendants."""
        parents: dict[int, int] = {}
        members: set[int] = set()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            try:
                stat = (entry / "stat").read_text()
                state, ppid = stat[stat.rindex(")") + 2 :].split()[:2]
                if state in ("Z", "X"):
                    continue
                parents[pid] = int(ppid)
                if os.readlink(entry / "ns" / "mnt") == namespace:
                    members.add(pid)
            except (OSError, ValueError):
                continue
        found = set(members)
        changed = True
        while changed:
            changed = False
            for child, parent in parents.items():
                if parent in found and child not in found:
                    found.add(child)
                    changed = True
        found.discard(os.getpid())
        return sorted(found)

    def cgroup_dirs(self) -> list[Path]:
        """The pods' cgroup parent, in every hierarchy where it exists."""
        relative = self.cgroup_parent.lstrip("/")
        candidates = [CGROUP_ROOT / relative] + [d / relative for d in CGROUP_ROOT.iterdir() if d.is_dir()]
        return [path for path in candidates if path.is_dir()]

    def _remove_cgroups(self, timeout: float = 5.0) -> list[str]:
        problems = []
        for top in self.cgroup_dirs():
            deadline = time.monotonic() + timeout
            while top.exists():
                for dirpath, _dirnames, _files in os.walk(top, topdown=False):
                    with contextlib.suppress(OSError):
                        os.rmdir(dirpath)
                if not top.exists() or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            if top.exists():
                problems.append(f"cgroup {top} could not be removed")
        return problems

    def __enter__(self) -> Containerd:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # A failing test keeps its own error; the teardown's is raised only when the test passed.
        self.stop(check=exc is None)


class CriClient:
    """A kubelet-like client of one CRI socket: typed calls, errors carrying the runtime's log tail."""

    def __init__(
        self,
        socket: Path,
        *,
        log_root: Path,
        cgroup_parent: str = "",
        timeout: float = 120.0,
        diagnostics: Callable[[], str] | None = None,
    ) -> None:
        self.socket = socket
        self.log_root = log_root
        self.cgroup_parent = cgroup_parent
        self.timeout = timeout
        self.diagnostics = diagnostics
        self.channel = grpc.insecure_channel(f"unix://{socket}")
        self.runtime = pb_grpc.RuntimeServiceStub(self.channel)
        self.images = pb_grpc.ImageServiceStub(self.channel)
        self.pod_configs: dict[str, pb.PodSandboxConfig] = {}

    def close(self) -> None:
        self.channel.close()

    def _call(
        self, method: Callable[..., Any], request: Any, *, timeout: float | None = None, quiet: bool = False
    ) -> Any:
        name = type(request).__name__.removesuffix("Request")
        try:
            return method(request, timeout=timeout or self.timeout)
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else None
            details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
            message = f"CRI {name} failed: {code.name if code else '?'}: {details}"
            if self.diagnostics is not None and not quiet:
                message += f"\ncontainerd log (end):\n{self.diagnostics()}"
            raise CriError(message, code) from None

    # ---- runtime

    def version(self) -> pb.VersionResponse:
        return self._call(self.runtime.Version, pb.VersionRequest(version="v1"))

    def status(self) -> dict[str, bool]:
        """The runtime's conditions by type (RuntimeReady, NetworkReady)."""
        response = self._call(self.runtime.Status, pb.StatusRequest(), timeout=5, quiet=True)
        return {c.type: c.status for c in response.status.conditions}

    # ---- pods

    def run_pod(
        self,
        name: str,
        *,
        namespace: str = "default",
        uid: str | None = None,
        runtime_handler: str = "",
        annotations: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
        hostname: str | None = None,
    ) -> str:
        """RunPodSandbox as kubelet sends it (log directory, cgroup parent, namespaces); returns the sandbox id."""
        uid = uid or str(uuid.uuid4())
        log_directory = self.log_root / f"{namespace}_{name}_{uid}"
        log_directory.mkdir(parents=True, exist_ok=True)
        config = pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=name, uid=uid, namespace=namespace, attempt=0),
            hostname=hostname or name,
            log_directory=str(log_directory),
            labels=dict(labels or {}),
            annotations=dict(annotations or {}),
            linux=pb.LinuxPodSandboxConfig(
                cgroup_parent=self.cgroup_parent,
                security_context=pb.LinuxSandboxSecurityContext(
                    namespace_options=pb.NamespaceOption(network=pb.POD, pid=pb.CONTAINER, ipc=pb.POD)
                ),
            ),
        )
        response = self._call(
            self.runtime.RunPodSandbox, pb.RunPodSandboxRequest(config=config, runtime_handler=runtime_handler)
        )
        self.pod_configs[response.pod_sandbox_id] = config
        return str(response.pod_sandbox_id)

    def pod_status(self, pod_id: str) -> pb.PodSandboxStatus:
        return self._call(self.runtime.PodSandboxStatus, pb.PodSandboxStatusRequest(pod_sandbox_id=pod_id)).status

    def list_pods(self) -> list[pb.PodSandbox]:
        return list(self._call(self.runtime.ListPodSandbox, pb.ListPodSandboxRequest()).items)

    def stop_pod(self, pod_id: str) -> None:
        self._call(self.runtime.StopPodSandbox, pb.StopPodSandboxRequest(pod_sandbox_id=pod_id))

    def remove_pod(self, pod_id: str) -> None:
        self._call(self.runtime.RemovePodSandbox, pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
        self.pod_configs.pop(pod_id, None)

    # ---- images

    def pull_image(self, ref: str, auth: tuple[str, str] | None = None, *, pod_id: str | None = None) -> str:
        """PullImage (with basic credentials if given); returns the image ref CRI answers (the image id)."""
        request = pb.PullImageRequest(image=pb.ImageSpec(image=ref))
        if auth is not None:
            request.auth.CopyFrom(pb.AuthConfig(username=auth[0], password=auth[1]))
        if pod_id is not None:
            request.sandbox_config.CopyFrom(self.pod_configs[pod_id])
        return str(self._call(self.images.PullImage, request).image_ref)

    def image_status(self, ref: str) -> pb.Image | None:
        """The image as CRI knows it, or None if it is not there."""
        response = self._call(self.images.ImageStatus, pb.ImageStatusRequest(image=pb.ImageSpec(image=ref)))
        return response.image if response.HasField("image") else None

    def list_images(self) -> list[pb.Image]:
        return list(self._call(self.images.ListImages, pb.ListImagesRequest()).images)

    def remove_image(self, ref: str) -> None:
        self._call(self.images.RemoveImage, pb.RemoveImageRequest(image=pb.ImageSpec(image=ref)))

    # ---- containers

    def create_container(
        self,
        pod_id: str,
        name: str,
        image: str,
        *,
        command: Sequence[str] = (),
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        mounts: Iterable[pb.Mount] = (),
        annotations: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
        working_dir: str = "",
        attempt: int = 0,
    ) -> str:
        """CreateContainer with the pod's sandbox config and kubelet's ``<name>/<attempt>.log``; returns its id."""
        config = pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name=name, attempt=attempt),
            image=pb.ImageSpec(image=image),
            command=list(command),
            args=list(args),
            working_dir=working_dir,
            envs=[pb.KeyValue(key=k, value=v) for k, v in (env or {}).items()],
            mounts=list(mounts),
            labels=dict(labels or {}),
            annotations=dict(annotations or {}),
            log_path=f"{name}/{attempt}.log",
            linux=pb.LinuxContainerConfig(
                security_context=pb.LinuxContainerSecurityContext(
                    namespace_options=pb.NamespaceOption(network=pb.POD, pid=pb.CONTAINER, ipc=pb.POD)
                )
            ),
        )
        request = pb.CreateContainerRequest(
            pod_sandbox_id=pod_id, config=config, sandbox_config=self.pod_configs[pod_id]
        )
        return str(self._call(self.runtime.CreateContainer, request).container_id)

    def start_container(self, container_id: str) -> None:
        self._call(self.runtime.StartContainer, pb.StartContainerRequest(container_id=container_id))

    def stop_container(self, container_id: str, timeout: int = 10) -> None:
        """StopContainer: SIGTERM (or the image's stop signal), SIGKILL after ``timeout`` seconds."""
        request = pb.StopContainerRequest(container_id=container_id, timeout=timeout)
        self._call(self.runtime.StopContainer, request, timeout=timeout + self.timeout)

    def remove_container(self, container_id: str) -> None:
        self._call(self.runtime.RemoveContainer, pb.RemoveContainerRequest(container_id=container_id))

    def container_status(self, container_id: str) -> pb.ContainerStatus:
        request = pb.ContainerStatusRequest(container_id=container_id)
        return self._call(self.runtime.ContainerStatus, request).status

    def container_pid(self, container_id: str) -> int:
        """The host pid of a running container's first process (from the verbose ContainerStatus)."""
        request = pb.ContainerStatusRequest(container_id=container_id, verbose=True)
        info = json.loads(self._call(self.runtime.ContainerStatus, request).info["info"])
        return int(info["pid"])

    def list_containers(self, pod_id: str | None = None) -> list[pb.Container]:
        request = pb.ListContainersRequest(filter=pb.ContainerFilter(pod_sandbox_id=pod_id or ""))
        return list(self._call(self.runtime.ListContainers, request).containers)

    def wait_for_exit(self, container_id: str, timeout: float = 30.0) -> pb.ContainerStatus:
        """Poll ContainerStatus until the container has exited; returns that status."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.container_status(container_id)
            if status.state == pb.CONTAINER_EXITED:
                return status
            if time.monotonic() > deadline:
                raise CriError(
                    f"container {container_id} still {pb.ContainerState.Name(status.state)} after {timeout} s"
                )
            time.sleep(0.1)

    def remove_everything(self, timeout: float | None = None) -> None:
        """Stop and remove every container and pod, as kubelet does when pods are deleted (``timeout`` per call)."""
        saved, self.timeout = self.timeout, timeout or self.timeout
        try:
            for container in self.list_containers():
                self.stop_container(container.id, timeout=0)
                self.remove_container(container.id)
            for pod in self.list_pods():
                self.stop_pod(pod.id)
                self.remove_pod(pod.id)
        finally:
            self.timeout = saved

    # ---- logs

    @staticmethod
    def read_log(path: Path) -> list[LogLine]:
        """The lines of a CRI log file, partial (``P``) pieces joined to their full line."""
        lines: list[LogLine] = []
        pending: dict[str, str] = {}
        try:
            content = path.read_text(errors="replace")
        except FileNotFoundError:
            return lines
        for raw in content.splitlines():
            parts = raw.split(" ", 3)
            if len(parts) < 3:
                continue
            stamp, stream, tag = parts[:3]
            text = parts[3] if len(parts) == 4 else ""
            if tag == "P":
                pending[stream] = pending.get(stream, "") + text
                continue
            lines.append(LogLine(stamp, stream, pending.pop(stream, "") + text))
        return lines

    def wait_for_log_line(self, path: Path, text: str, timeout: float = 30.0) -> LogLine:
        """Wait until a full line of the CRI log at ``path`` contains ``text``; returns that line."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.read_log(path)
            for line in lines:
                if text in line.text:
                    return line
            if time.monotonic() > deadline:
                shown = "\n".join(f"{line.stream}: {line.text}" for line in lines[-20:]) or "(empty)"
                raise CriError(f"{text!r} did not appear in {path} within {timeout} s; it holds:\n{shown}")
            time.sleep(0.1)


# ---- images for the tests


def busybox_layer() -> bytes:
    """A layer tar with the static busybox as /bin/busybox, a link for each applet, and a root user."""
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout.split()
    entries = [E("bin", "dir"), E("etc", "dir"), E("root", "dir", mode=0o700), E("tmp", "dir", mode=0o1777)]
    entries.append(E("bin/busybox", data=Path(BUSYBOX).read_bytes(), mode=0o755))
    entries += [E(f"bin/{name}", "symlink", link="busybox") for name in sorted(set(applets) - {"busybox"})]
    entries.append(E("etc/passwd", data=b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n"))
    entries.append(E("etc/group", data=b"root:x:0:\nnogroup:x:65534:\n"))
    return make_tar(entries)


def push_busybox_image(
    registry_host: str,
    repository: str,
    workdir: Path,
    *,
    tag: str = "latest",
    entrypoint: Sequence[str] | None = None,
    cmd: Sequence[str] = ("/bin/sh",),
    credentials: tuple[str, str] | None = None,
) -> str:
    """Build a one-layer busybox image in an OCI layout under ``workdir`` and push it (over plain HTTP, with basic
    ``credentials`` if given); returns the reference."""
    config: dict[str, object] = {"Env": ["PATH=/bin"], "Cmd": list(cmd)}
    if entrypoint is not None:
        config["Entrypoint"] = list(entrypoint)
    layout = workdir / f"{repository.replace('/', '_')}-{tag}"
    image_from_tars(layout, tag, [busybox_layer()], config=config)
    reference = f"{registry_host}/{repository}:{tag}"
    options = RegistryOptions(tls_verify=False, credentials=Credentials(*credentials) if credentials else None)
    destination = RegistryStore(parse_reference(reference), options)
    try:
        copy_image(LayoutStore(str(layout), tag), destination, parse_platform("linux/amd64"))
    finally:
        destination.close()
    return reference


def push_sandbox_image(registry_host: str, workdir: Path) -> str:
    """A pause-like sandbox image (busybox sleeping forever) in the registry; returns its reference."""
    return push_busybox_image(
        registry_host, "sealpod-cri/pause", workdir, tag="1", entrypoint=["/bin/busybox", "sleep", "2147483647"], cmd=()
    )
