"""Loop devices for the enclave's rootfs image: attach a file with autoclear (the device goes away with the last
mount, even if the enclave dies), detach it explicitly on a clean close."""

from __future__ import annotations

import ctypes
import fcntl
import os
import time

LOOP_CTL_GET_FREE = 0x4C82
LOOP_CONFIGURE = 0x4C0A
LOOP_CLR_FD = 0x4C01
LO_FLAGS_AUTOCLEAR = 4


class _LoopInfo64(ctypes.Structure):
    _fields_ = [
        ("lo_device", ctypes.c_uint64),
        ("lo_inode", ctypes.c_uint64),
        ("lo_rdevice", ctypes.c_uint64),
        ("lo_offset", ctypes.c_uint64),
        ("lo_sizelimit", ctypes.c_uint64),
        ("lo_number", ctypes.c_uint32),
        ("lo_encrypt_type", ctypes.c_uint32),
        ("lo_encrypt_key_size", ctypes.c_uint32),
        ("lo_flags", ctypes.c_uint32),
        ("lo_file_name", ctypes.c_uint8 * 64),
        ("lo_crypt_name", ctypes.c_uint8 * 64),
        ("lo_encrypt_key", ctypes.c_uint8 * 32),
        ("lo_init", ctypes.c_uint64 * 2),
    ]


class _LoopConfig(ctypes.Structure):
    _fields_ = [
        ("fd", ctypes.c_uint32),
        ("block_size", ctypes.c_uint32),
        ("info", _LoopInfo64),
        ("reserved", ctypes.c_uint64 * 8),
    ]


class LoopDevice:
    """A loop device backed by ``path`` (held open until :meth:`detach`)."""

    def __init__(self, path: str) -> None:
        backing = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        try:
            for _ in range(10):  # another process may take the free device between the two calls
                control = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
                try:
                    number = fcntl.ioctl(control, LOOP_CTL_GET_FREE)
                finally:
                    os.close(control)
                self.path = f"/dev/loop{number}"
                self.fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
                config = _LoopConfig(fd=backing)
                config.info.lo_flags = LO_FLAGS_AUTOCLEAR
                try:
                    fcntl.ioctl(self.fd, LOOP_CONFIGURE, config)
                    return
                except OSError:
                    os.close(self.fd)
                    time.sleep(0.01)
            raise OSError(f"no free loop device for {path}")
        finally:
            os.close(backing)

    def detach(self, timeout: float = 10.0) -> None:
        """Release the device (after its filesystem is unmounted): flush its writes through to the backing file,
        clear it, and wait until the kernel has let go of the file (the release is asynchronous)."""
        try:
            os.fsync(self.fd)  # a flush of the device makes the loop driver fsync the backing file
            fcntl.ioctl(self.fd, LOOP_CLR_FD)
        except OSError:
            pass  # autoclear already releases it when the last user goes
        finally:
            os.close(self.fd)
        backing = f"/sys/block/{os.path.basename(self.path)}/loop/backing_file"
        deadline = time.monotonic() + timeout
        while os.path.exists(backing) and time.monotonic() < deadline:
            time.sleep(0.005)
