"""The generic enclave's program: attest, pull into a rootfs only this process's mount namespace sees, run the workload.

The host starts it with a :class:`BootRequest` (what to run and where the KBS is: nothing secret). Everything else,
policy, credentials and keys, comes from the KBS after attestation. On the simulated platform the enclave's identity
is its measurement (:mod:`sealpod.enclave.measure`); a namespace hides the rootfs from the host, it does not protect
it from the host's root, and SGX is what would.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from sealpod.agent.pull import AgentSettings, secure_pull
from sealpod.boot_request import BootRequest
from sealpod.config import state_dir
from sealpod.enclave import linux, sandbox
from sealpod.enclave.cgroups import Limits
from sealpod.enclave.measure import measure
from sealpod.enclave.workload import workload_for
from sealpod.errors import SealpodError
from sealpod.kbs.client import KbsClient
from sealpod.tee import Attester, detect


def attester(allow_sim: bool) -> Attester:
    """Real SGX when present; else the simulated platform attesting this enclave's measured identity."""
    try:
        return detect()
    except SealpodError:
        if not allow_sim:
            raise
    from sealpod.tee.sim import SimPlatform

    identity = measure()
    print(
        "sealpod: simulated SGX: the flow is real, but nothing here is secret from this host's root",
        file=sys.stderr,
    )
    return SimPlatform.load().attester(
        mr_enclave=identity.mr_enclave,
        mr_signer=identity.mr_signer,
        isv_prod_id=identity.isv_prod_id,
        isv_svn=identity.isv_svn,
    )


def _memory_rootfs() -> Path:
    """A tmpfs mounted only in this process's own mount namespace (nothing reaches the disk)."""
    linux.unshare(linux.CLONE_NEWNS)
    linux.mount("none", "/", None, linux.MS_REC | linux.MS_PRIVATE)
    base = state_dir() / "run"
    base.mkdir(parents=True, exist_ok=True, mode=0o700)
    mountpoint = Path(tempfile.mkdtemp(prefix="rootfs-", dir=base))
    linux.mount("tmpfs", str(mountpoint), "tmpfs", linux.MS_NODEV, "mode=0755")
    return mountpoint


def boot(request: BootRequest) -> int:
    """Attest, pull, verify, decrypt and unpack, then run the workload; returns its exit status."""
    tee = attester(request.allow_sim)
    mountpoint = _memory_rootfs()
    try:
        rootfs = mountpoint / "root"
        settings = AgentSettings(tls_verify=request.registry_tls_verify)
        if request.policy_uri:
            settings = AgentSettings(policy_uri=request.policy_uri, tls_verify=request.registry_tls_verify)
        with KbsClient(request.kbs_url, tee, ca_file=request.kbs_ca_file) as client:
            result = secure_pull(request.image, rootfs, client, settings)
        workload = workload_for(result.image.config, rootfs, request.command, request.env)
        limits = Limits(request.memory, request.pids)
        return sandbox.run(rootfs, workload, hostname=request.name, share_net=request.share_net, limits=limits)
    finally:
        linux.umount(str(mountpoint), linux.MNT_DETACH)
        shutil.rmtree(mountpoint, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    """``python -m sealpod.enclave REQUEST_JSON``: boot and exit with the workload's status."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m sealpod.enclave REQUEST_JSON", file=sys.stderr)
        sys.exit(2)
    try:
        code = boot(BootRequest.from_json(args[0]))
    except SealpodError as err:
        print(f"sealpod enclave: error: {err}", file=sys.stderr)
        if err.hint:
            print(f"  hint: {err.hint}", file=sys.stderr)
        code = 125
    except OSError as err:
        print(f"sealpod enclave: error: {err}", file=sys.stderr)
        code = 125
    sys.stdout.flush()
    os._exit(code)
