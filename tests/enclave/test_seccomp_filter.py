"""The workload's seccomp filter, built through sealpod's own ctypes binding of libseccomp: the same BPF program the
pyseccomp binding makes of the same rules, and it refuses what it must in a process that loaded it."""

from __future__ import annotations

import errno
import subprocess
import sys
import tempfile

import pyseccomp

from sealpod.enclave import seccomp_filter


def _bpf_of_pyseccomp() -> bytes:
    flt = pyseccomp.SyscallFilter(defaction=pyseccomp.ALLOW)
    deny = pyseccomp.ERRNO(errno.EPERM)
    for name in seccomp_filter.DENIED:
        try:
            flt.add_rule(deny, name)
        except (ValueError, RuntimeError, OSError):
            continue
    for flag in seccomp_filter.NAMESPACE_FLAGS:
        flt.add_rule(deny, "clone", pyseccomp.Arg(0, pyseccomp.MASKED_EQ, flag, flag))
    flt.add_rule(pyseccomp.ERRNO(errno.ENOSYS), "clone3")
    with tempfile.TemporaryFile() as out:
        flt.export_bpf(out)
        out.seek(0)
        return out.read()


def test_the_filter_is_the_bpf_pyseccomp_makes_of_the_same_rules() -> None:
    with tempfile.TemporaryFile() as out:
        seccomp_filter.build().export_bpf(out.fileno())
        out.seek(0)
        ours = out.read()
    assert len(ours) > 8 * len(seccomp_filter.DENIED)  # one BPF instruction is 8 bytes
    assert ours == _bpf_of_pyseccomp()


_LOADED = """
import ctypes, os
from sealpod.enclave import seccomp_filter
libc = ctypes.CDLL(None, use_errno=True)
assert libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS
seccomp_filter.install()
def errno_of(result):
    return ctypes.get_errno() if result == -1 else 0
print("unshare", errno_of(libc.unshare(0x10000000)))  # CLONE_NEWUSER: needs no capability, only the filter stops it
print("mount", errno_of(libc.mount(b"none", b"/tmp", b"tmpfs", 0, None)))
print("clone3", errno_of(libc.syscall(435, None, 0)))
pid = os.fork()
if pid == 0:
    os._exit(7)
print("fork", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
"""


def test_a_process_under_the_filter_cannot_make_namespaces_or_mount_but_can_fork() -> None:
    proc = subprocess.run([sys.executable, "-c", _LOADED], capture_output=True, text=True, check=False, timeout=60)
    assert proc.returncode == 0, proc.stderr
    results = dict(line.split() for line in proc.stdout.splitlines())
    assert results == {
        "unshare": str(errno.EPERM),
        "mount": str(errno.EPERM),
        "clone3": str(errno.ENOSYS),  # libc falls back to clone, whose namespace flags the filter checks
        "fork": "7",
    }
