"""The workload's isolation: its own pid, mount, ipc, uts and (optionally) net namespaces, pivot_root into the
rootfs, the OCI default capability set, no_new_privs; then exec as the image's user.

Runs in the enclave process, which is already in its own private mount namespace holding the plaintext rootfs.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from sealpod._internal.cgroups import Cgroups, Limits
from sealpod.enclave import linux, seccomp_filter
from sealpod.enclave.workload import Workload

# the capabilities runc gives a container by default (OCI runtime-spec / moby default set)
DEFAULT_CAPABILITIES = {
    "CAP_CHOWN": 0,
    "CAP_DAC_OVERRIDE": 1,
    "CAP_FOWNER": 3,
    "CAP_FSETID": 4,
    "CAP_KILL": 5,
    "CAP_SETGID": 6,
    "CAP_SETUID": 7,
    "CAP_SETPCAP": 8,
    "CAP_NET_BIND_SERVICE": 10,
    "CAP_NET_RAW": 13,
    "CAP_SYS_CHROOT": 18,
    "CAP_MKNOD": 27,
    "CAP_AUDIT_WRITE": 29,
    "CAP_SETFCAP": 31,
}
PR_SET_PDEATHSIG = 1
_DEVICES = ("null", "zero", "full", "random", "urandom", "tty")


def _mount_filesystems(root: str) -> None:
    for name in ("proc", "dev", "tmp", "sys"):
        os.makedirs(f"{root}/{name}", exist_ok=True)
    linux.mount("proc", f"{root}/proc", "proc", linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC)
    linux.mount("tmpfs", f"{root}/dev", "tmpfs", linux.MS_NOSUID, "mode=755,size=65536k")
    for device in _DEVICES:
        target = f"{root}/dev/{device}"
        open(target, "a").close()
        linux.mount(f"/dev/{device}", target, None, linux.MS_BIND)
    os.makedirs(f"{root}/dev/shm", exist_ok=True)
    linux.mount("shm", f"{root}/dev/shm", "tmpfs", linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC, "mode=1777")
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1")):
        os.symlink(target, f"{root}/dev/{name}")
    os.symlink("/proc/self/fd/2", f"{root}/dev/stderr")


def _drop_capabilities(keep: set[int]) -> None:
    for cap in range(linux.last_capability() + 1):
        if cap not in keep:
            linux.prctl(linux.PR_CAPBSET_DROP, cap)
    linux.prctl(linux.PR_CAP_AMBIENT, linux.PR_CAP_AMBIENT_CLEAR_ALL)
    mask = sum(1 << cap for cap in keep)
    linux.capset(mask, mask, 0)


def _join_network(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        linux.setns(fd, linux.CLONE_NEWNET)
    finally:
        os.close(fd)


def enter(
    rootfs: Path,
    workload: Workload,
    *,
    hostname: str,
    share_net: bool,
    cgroups: Cgroups | None,
    netns: str | None = None,
) -> None:
    """In the child, before exec: the cgroups, the new namespaces (or the given network namespace), the rootfs as /,
    the capabilities, the user, no_new_privs and the seccomp filter."""
    if cgroups:
        cgroups.join()
    if netns:
        _join_network(netns)
    own_net = not (share_net or netns)
    flags = linux.CLONE_NEWNS | linux.CLONE_NEWUTS | linux.CLONE_NEWIPC | (linux.CLONE_NEWNET if own_net else 0)
    linux.unshare(flags)
    linux.mount("none", "/", None, linux.MS_REC | linux.MS_PRIVATE)
    root = str(rootfs)
    linux.mount(root, root, None, linux.MS_BIND | linux.MS_REC)
    _mount_filesystems(root)
    os.chdir(root)
    linux.pivot_root(".", ".")
    linux.umount(".", linux.MNT_DETACH)
    os.chdir("/")
    linux.sethostname(hostname)
    try:
        os.chdir(workload.cwd)
    except OSError:
        os.makedirs(workload.cwd, exist_ok=True)
        os.chdir(workload.cwd)
    _drop_capabilities(set(DEFAULT_CAPABILITIES.values()))
    os.setgroups(workload.groups)
    os.setgid(workload.gid)
    os.setuid(workload.uid)
    linux.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # after setuid, which clears it: dies with the enclave
    linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
    seccomp_filter.install()


def run(
    rootfs: Path,
    workload: Workload,
    *,
    hostname: str = "sealpod",
    share_net: bool = False,
    limits: Limits | None = None,
    netns: str | None = None,
    cgroup_parent: str | None = None,
) -> int:
    """Run ``workload`` sandboxed in ``rootfs``; stdio pass through, SIGTERM/SIGINT/SIGHUP are forwarded; returns its
    exit status (128 + signal number when a signal ended it, as shells report it)."""
    if limits and cgroup_parent:  # the container's cgroup (Kubernetes): the workload's leaf in it
        cgroups: Cgroups | None = Cgroups("workload", limits, parent=cgroup_parent.strip("/"))
    else:
        cgroups = Cgroups(f"{hostname}-{os.getpid()}", limits) if limits else None
    linux.unshare(linux.CLONE_NEWPID)  # the next child is pid 1 of a new pid namespace
    process: subprocess.Popen[bytes] | None = None
    terminations: list[int] = []
    early: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        if process is None:
            early.append(signum)  # during the spawn: delivered as soon as the workload exists
            return
        if signum == signal.SIGTERM and terminations:
            process.kill()  # a second SIGTERM (sealpod stop after its grace time): the workload is killed
        else:
            process.send_signal(signum)
        if signum == signal.SIGTERM:
            terminations.append(signum)

    # forwarding is in place before the workload runs: a SIGTERM just after its first output must reach it, not
    # end the enclave under it (the enclave's own pre-start handler would, and the workload would die by SIGKILL)
    previous = {signum: signal.signal(signum, forward) for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        process = subprocess.Popen(
            workload.argv,
            env=workload.env,
            preexec_fn=lambda: enter(
                rootfs, workload, hostname=hostname, share_net=share_net, cgroups=cgroups, netns=netns
            ),
            close_fds=True,
        )
    except BaseException:
        for kind, handler in previous.items():
            signal.signal(kind, handler)
        if cgroups:
            cgroups.remove()
        raise
    for pending in early:
        forward(pending, None)
    try:
        code = process.wait()
    finally:
        if cgroups:
            cgroups.remove()
    return 128 - code if code < 0 else code
