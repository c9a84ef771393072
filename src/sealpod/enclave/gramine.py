"""A Gramine manifest template for running the generic enclave on SGX hardware.

``gramine-manifest`` fills the ``{{ ... }}`` placeholders, ``gramine-sgx-sign`` measures it (MRENCLAVE) with the
enclave signing key, and the node starts ``gramine-sgx sealpod`` instead of ``python -m sealpod.enclave``. What the
manifest decides:

- **Trusted files:** the interpreter, the standard library, the venv's site-packages and the sealpod package are
  hashed into MRENCLAVE; anything else the enclave reads is either an allowed (unmeasured, non-secret) host file such
  as ``/etc/resolv.conf``, or lives on the encrypted mount.
- **The rootfs:** a Gramine encrypted mount keyed by ``_sgx_mrenclave`` (sealed to this enclave build) under the
  state dir replaces gocryptfs, which needs FUSE; the plaintext never leaves the enclave.
- **Attestation:** ``sgx.remote_attestation = "dcap"``: ``/dev/attestation`` is what :class:`GramineAttester` reads.
- **Arguments:** the boot request is passed on the command line (``loader.insecure__use_cmdline_argv``): it holds
  nothing secret, and everything it names is verified after attestation.

Gramine does not offer namespaces, mounts, ``pivot_root`` or seccomp to the program inside: under Gramine the SGX
enclave boundary replaces the sandbox of :mod:`sealpod.enclave.sandbox`.
"""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path
from typing import Any

import tomli_w

import sealpod
from sealpod.enclave.measure import ISV_PROD_ID, ISV_SVN

ALLOWED_HOST_FILES = ("/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/host.conf", "/etc/ssl/certs/")


def _directory_uri(path: str) -> str:
    return f"file:{path.rstrip('/')}/"


def gramine_manifest(
    *,
    state_dir: Path = Path("/var/lib/sealpod"),
    enclave_size: str = "8G",
    max_threads: int = 64,
    python: str | None = None,
) -> str:
    """The manifest template (TOML with Gramine's Jinja placeholders) for the generic enclave as installed here."""
    interpreter = python or str(Path(sys.executable).resolve())
    stdlib = sysconfig.get_paths()["stdlib"]
    site_packages = sysconfig.get_paths()["purelib"]
    package = str(Path(sealpod.__file__).parent)
    code_mounts = [stdlib, site_packages]
    if not package.startswith(site_packages.rstrip("/") + "/"):
        code_mounts.append(package)  # an editable install: the package is outside site-packages
    values: dict[str, Any] = {
        "libos": {"entrypoint": interpreter},
        "loader": {
            "entrypoint": {"uri": "file:{{ gramine.libos }}"},
            "log_level": "error",
            "insecure__use_cmdline_argv": True,
            "env": {
                "LD_LIBRARY_PATH": "/lib:{{ arch_libdir }}:/usr/{{ arch_libdir }}",
                "PYTHONDONTWRITEBYTECODE": "1",
                "SEALPOD_STATE_DIR": str(state_dir),
            },
        },
        "fs": {
            "mounts": [
                {"path": "/lib", "uri": "file:{{ gramine.runtimedir() }}"},
                {"path": "{{ arch_libdir }}", "uri": "file:{{ arch_libdir }}"},
                {"path": "/usr", "uri": "file:/usr"},
                {"path": "/etc", "uri": "file:/etc"},
                *({"path": path, "uri": f"file:{path}"} for path in code_mounts),
                {
                    "type": "encrypted",
                    "path": str(state_dir / "rootfs"),
                    "uri": f"file:{state_dir / 'rootfs'}",
                    "key_name": "_sgx_mrenclave",
                },
                {"type": "tmpfs", "path": "/tmp"},
            ]
        },
        "sys": {"enable_extra_runtime_domain_names_conf": True},
        "sgx": {
            "debug": False,
            "edmm_enable": False,
            "enclave_size": enclave_size,
            "max_threads": max_threads,
            "isvprodid": ISV_PROD_ID,
            "isvsvn": ISV_SVN,
            "remote_attestation": "dcap",
            "trusted_files": [
                "file:{{ gramine.libos }}",
                f"file:{interpreter}",
                _directory_uri("{{ gramine.runtimedir() }}"),
                _directory_uri("{{ arch_libdir }}"),
                _directory_uri(stdlib),
                _directory_uri(site_packages),
                _directory_uri(package),
            ],
            "allowed_files": [f"file:{path}" for path in ALLOWED_HOST_FILES],
        },
    }
    header = (
        "# sealpod generic enclave: Gramine manifest template (sealpod enclave manifest --gramine)\n"
        "# gramine-manifest -Darch_libdir=/lib/x86_64-linux-gnu sealpod.manifest.template sealpod.manifest\n"
        "# gramine-sgx-sign --manifest sealpod.manifest --output sealpod.manifest.sgx --key enclave-signing-key.pem\n"
    )
    return header + tomli_w.dumps(values)
