"""The workload's seccomp filter: the system calls the OCI/moby default profile denies an unprivileged container
(kernel modules, mounts, namespaces, ptrace, keyrings, clocks, reboot, bpf, ...) fail with EPERM; a system call of
another architecture (32-bit x86 on x86_64) kills the process.

The filter is libseccomp's (its rules compiled to BPF by libseccomp itself), called through ctypes: the pyseccomp
binding looked libseccomp and libc up with ``ctypes.util.find_library``, two ``ldconfig`` runs (~3 ms) in every
enclave's start."""

from __future__ import annotations

import ctypes
import errno
import os

DENIED = [
    "acct",
    "add_key",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "create_module",
    "delete_module",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "get_kernel_syms",
    "init_module",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "kcmp",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mount",
    "mount_setattr",
    "move_mount",
    "name_to_handle_at",
    "nfsservctl",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "pivot_root",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
    "query_module",
    "quotactl",
    "reboot",
    "request_key",
    "setdomainname",
    "sethostname",
    "setns",
    "settimeofday",
    "swapoff",
    "swapon",
    "sysfs",
    "_sysctl",
    "umount",
    "umount2",
    "unshare",
    "uselib",
    "userfaultfd",
    "ustat",
    "vm86",
    "vm86old",
]
# clone(2) creating namespaces is denied (flag by flag); clone3 answers ENOSYS so libc falls back to clone.
NAMESPACE_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000)


#: libseccomp's ABI (seccomp.h): actions, the masked-equality comparison, and its "no such system call" number.
ACT_ALLOW = 0x7FFF0000
_ACT_ERRNO = 0x00050000
_CMP_MASKED_EQ = 7
_NR_SCMP_ERROR = -1


def act_errno(code: int) -> int:
    """The action that fails a system call with ``code`` (``SCMP_ACT_ERRNO``)."""
    return _ACT_ERRNO | (code & 0xFFFF)


class _ArgCmp(ctypes.Structure):
    """``struct scmp_arg_cmp``."""

    _fields_ = (
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    )


def _libseccomp() -> ctypes.CDLL:
    lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    lib.seccomp_init.argtypes = (ctypes.c_uint32,)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_release.argtypes = (ctypes.c_void_p,)
    lib.seccomp_release.restype = None
    lib.seccomp_load.argtypes = (ctypes.c_void_p,)
    lib.seccomp_load.restype = ctypes.c_int
    lib.seccomp_syscall_resolve_name.argtypes = (ctypes.c_char_p,)
    lib.seccomp_syscall_resolve_name.restype = ctypes.c_int
    lib.seccomp_rule_add_array.argtypes = (
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.POINTER(_ArgCmp),
    )
    lib.seccomp_rule_add_array.restype = ctypes.c_int
    lib.seccomp_export_bpf.argtypes = (ctypes.c_void_p, ctypes.c_int)
    lib.seccomp_export_bpf.restype = ctypes.c_int
    return lib


#: Loaded when the enclave imports this module: the filter is built in the workload's process after its pivot_root,
#: where the host's libseccomp is no longer on any path.
_LIB = _libseccomp()


class SyscallFilter:
    """A libseccomp filter context: rules added, then loaded into this thread (released when collected)."""

    def __init__(self, default_action: int) -> None:
        self._lib = _LIB
        self._ctx = self._lib.seccomp_init(default_action)
        if not self._ctx:
            raise OSError(errno.ENOMEM, "seccomp_init failed")

    def __del__(self) -> None:
        if getattr(self, "_ctx", None):
            self._lib.seccomp_release(self._ctx)

    def add_rule(self, action: int, name: str, masked_arg0: tuple[int, int] | None = None) -> None:
        """Add ``action`` for the system call ``name`` (only when ``arg0 & mask == value``, for ``masked_arg0``
        ``(mask, value)``); an OSError when libseccomp does not know the call or refuses the rule."""
        number = self._lib.seccomp_syscall_resolve_name(name.encode())
        if number == _NR_SCMP_ERROR:
            raise OSError(errno.EINVAL, f"libseccomp knows no system call {name!r}")
        if masked_arg0 is None:
            result = self._lib.seccomp_rule_add_array(self._ctx, action, number, 0, None)
        else:
            compare = _ArgCmp(0, _CMP_MASKED_EQ, masked_arg0[0], masked_arg0[1])
            result = self._lib.seccomp_rule_add_array(self._ctx, action, number, 1, ctypes.byref(compare))
        if result != 0:
            raise OSError(-result, f"seccomp_rule_add({name}): {os.strerror(-result)}")

    def export_bpf(self, fd: int) -> None:
        """Write the filter's BPF program to ``fd`` (what :meth:`load` gives the kernel)."""
        result = self._lib.seccomp_export_bpf(self._ctx, fd)
        if result != 0:
            raise OSError(-result, f"seccomp_export_bpf: {os.strerror(-result)}")

    def load(self) -> None:
        """Load the filter into this thread (needs no_new_privs first)."""
        result = self._lib.seccomp_load(self._ctx)
        if result != 0:
            raise OSError(-result, f"seccomp_load: {os.strerror(-result)}")


def build() -> SyscallFilter:
    """The filter (not yet loaded)."""
    flt = SyscallFilter(ACT_ALLOW)
    deny = act_errno(errno.EPERM)
    for name in DENIED:
        try:
            flt.add_rule(deny, name)
        except OSError:
            continue  # a system call this architecture does not have (the namespace rules below must not fail)
    for flag in NAMESPACE_FLAGS:
        flt.add_rule(deny, "clone", (flag, flag))
    flt.add_rule(act_errno(errno.ENOSYS), "clone3")
    return flt


def install() -> None:
    """Load the filter into this thread (needs no_new_privs first); inherited across fork and exec."""
    build().load()
