"""Real SGX attesters: Gramine's /dev/attestation pseudo-files and Occlum's /dev/sgx ioctls.

Neither exists without SGX hardware; tests drive them with a fake device directory and an ioctl seam.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sealpod.errors import AttestationError

REPORT_DATA_SIZE = 64
OCCLUM_GET_QUOTE_SIZE = 0x80047307
OCCLUM_GEN_QUOTE = 0xC0187308
MAX_QUOTE = 64 * 1024


def _report_data(data: bytes) -> bytes:
    if len(data) > REPORT_DATA_SIZE:
        raise AttestationError(f"report data is {len(data)} bytes; a quote carries at most {REPORT_DATA_SIZE}")
    return data.ljust(REPORT_DATA_SIZE, b"\0")


class GramineAttester:
    """Gramine with ``sgx.remote_attestation = "dcap"``: write user_report_data, then read quote."""

    tee = "sgx"

    def __init__(self, root: Path = Path("/dev/attestation")) -> None:
        self.root = root

    def evidence(self, report_data: bytes) -> bytes:
        kind_file = self.root / "attestation_type"
        if kind_file.exists():
            kind = kind_file.read_text().strip()
            if kind != "dcap":
                raise AttestationError(
                    f"Gramine attestation type is {kind!r}, not 'dcap'",
                    hint='set sgx.remote_attestation = "dcap" in the Gramine manifest',
                )
        (self.root / "user_report_data").write_bytes(_report_data(report_data))
        quote = (self.root / "quote").read_bytes()
        if not quote or len(quote) > MAX_QUOTE:
            raise AttestationError(f"Gramine returned a quote of {len(quote)} bytes")
        return quote


class _QuoteRequest(ctypes.Structure):
    _fields_ = [("report_data", ctypes.c_void_p), ("quote_size", ctypes.c_void_p), ("quote_buf", ctypes.c_void_p)]


Ioctl = Callable[[int, int, Any], Any]


class OcclumAttester:
    """Occlum: ``ioctl(SGXIOC_GET_DCAP_QUOTE_SIZE)`` then ``ioctl(SGXIOC_GEN_DCAP_QUOTE)`` on /dev/sgx."""

    tee = "sgx"

    def __init__(self, device: Path = Path("/dev/sgx"), ioctl: Ioctl | None = None) -> None:
        self.device = device
        self._ioctl = ioctl or fcntl.ioctl

    def evidence(self, report_data: bytes) -> bytes:
        data = ctypes.create_string_buffer(_report_data(report_data), REPORT_DATA_SIZE)
        fd = os.open(self.device, os.O_RDONLY)
        try:
            size = ctypes.c_uint32(0)
            self._ioctl(fd, OCCLUM_GET_QUOTE_SIZE, size)
            if not 0 < size.value <= MAX_QUOTE:
                raise AttestationError(f"Occlum reports a quote size of {size.value}")
            buffer = ctypes.create_string_buffer(size.value)
            request = _QuoteRequest(ctypes.addressof(data), ctypes.addressof(size), ctypes.addressof(buffer))
            self._ioctl(fd, OCCLUM_GEN_QUOTE, request)
            return buffer.raw[: size.value]
        except OSError as err:
            raise AttestationError(f"Occlum quote ioctl failed: {err.strerror}") from None
        finally:
            os.close(fd)
