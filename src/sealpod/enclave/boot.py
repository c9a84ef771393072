"""The generic enclave's program: attest, pull into a rootfs only this process's mount namespace sees, run the workload.

The host starts it with a :class:`BootRequest` (what to run and where the KBS is: nothing secret). Everything else,
policy, credentials and keys, comes from the KBS after attestation. On the simulated platform the enclave's identity
is its measurement (:mod:`sealpod.enclave.measure`); a namespace hides the rootfs from the host, it does not protect
it from the host's root, and SGX is what would.
"""

from __future__ import annotations

import os
import signal
import sys
from concurrent.futures import Future, ThreadPoolExecutor

from sealpod.agent.pull import DEFAULT_POLICY_URI, AgentSettings, optional_resource, verify_image
from sealpod.agent.run_policy import DEFAULT_RUN_POLICY_URI, RunPolicy
from sealpod.boot_request import BootRequest
from sealpod.cgroups import Limits, join_container, valid_container_path
from sealpod.enclave import sandbox
from sealpod.enclave.measure import running_identity
from sealpod.enclave.rootfs import GocryptfsRootfs, MemoryRootfs, private_mount_namespace
from sealpod.enclave.sealing import sealing_key
from sealpod.enclave.workload import default_argv, workload_for
from sealpod.errors import SealpodError
from sealpod.kbs.client import KbsClient
from sealpod.oci.pull import PullResult
from sealpod.tee import Attester, detect


def attester(allow_sim: bool) -> Attester:
    """Real SGX when present; else the simulated platform attesting this enclave's measured identity."""
    try:
        return detect()
    except SealpodError:
        if not allow_sim:
            raise
    from sealpod.tee.sim import SimPlatform

    identity = running_identity()
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


def _open_volume(request: BootRequest, tee: Attester) -> MemoryRootfs | GocryptfsRootfs:
    if request.rootfs == "memory":
        return MemoryRootfs()
    if request.rootfs == "gocryptfs":
        return GocryptfsRootfs(request.image, sealing_key(tee))
    raise SealpodError(f"unknown rootfs kind {request.rootfs!r}", hint="use gocryptfs or memory")


def _close_when_opened(opening: Future[MemoryRootfs | GocryptfsRootfs]) -> None:
    """Close a volume whose opening was under way when the run failed (a new one is removed again)."""
    try:
        volume = opening.result()
    except BaseException:
        return
    volume.close(remove=volume.pulled_digest() is None)


def boot(request: BootRequest) -> int:
    """Attest, pull, verify, decrypt and unpack (or reopen a sealed rootfs), then run the workload.

    Nothing touches the disk before the KBS accepted the evidence and the run policy allowed the request; a rootfs
    made for a pull that then failed is removed again.
    """
    if os.geteuid() != 0:
        raise SealpodError(
            "the enclave needs root: it builds the workload's namespaces, mounts and cgroups",
            hint="run sealpod run as root (sudo)",
        )
    if request.cgroup_path:
        if not valid_container_path(request.cgroup_path):
            raise SealpodError(f"the container's cgroup path {request.cgroup_path!r} is not a cgroupfs path")
        join_container(request.cgroup_path)
    tee = attester(request.allow_sim)
    private_mount_namespace()
    settings = AgentSettings(
        policy_uri=request.policy_uri or DEFAULT_POLICY_URI, tls_verify=request.registry_tls_verify
    )
    with KbsClient(request.kbs_url, tee, ca_file=request.kbs_ca_file) as client:
        client.attest()
        run_policy = RunPolicy()
        if request.command or request.env or request.argv or request.host_env:
            raw = optional_resource(client, DEFAULT_RUN_POLICY_URI)
            run_policy = RunPolicy.parse(raw, DEFAULT_RUN_POLICY_URI) if raw is not None else RunPolicy()
            run_policy.check(request.command, request.env, DEFAULT_RUN_POLICY_URI)
        # the volume (gocryptfs and loop mounts, ~15 ms) opens while the policy, manifest and signatures are fetched
        with ThreadPoolExecutor(1, thread_name_prefix="volume") as opener:
            opening = opener.submit(_open_volume, request, tee)
            try:
                verified = verify_image(request.image, client, settings)
            except BaseException:
                _close_when_opened(opening)
                raise
        with verified:
            volume = opening.result()
            held = volume.pulled_digest()
            try:
                if held == verified.resolved.manifest_digest:
                    result = PullResult(verified.resolved, volume.rootfs)
                else:
                    if held is not None:
                        volume.discard()
                    result = verified.fetch_into(volume.rootfs)
            except BaseException:
                volume.close(remove=held is None)
                raise
    try:
        if held == result.image.manifest_digest:
            print(
                f"sealpod: reopened the sealed rootfs of {held}: signatures checked, no layer pulled", file=sys.stderr
            )
        else:
            volume.mark_pulled(result.image.manifest_digest)
        config = result.image.config
        argv = run_policy.pod_argv(request.argv, default_argv(config), DEFAULT_RUN_POLICY_URI)
        pod_env, dropped = run_policy.pod_env(request.host_env, list(config.config.env or []) if config.config else [])
        if dropped:
            print(f"sealpod: the run policy drops the host's variables {', '.join(dropped)}", file=sys.stderr)
        workload = workload_for(config, volume.rootfs, request.command, [*request.env, *pod_env], argv)
        limits = Limits(request.memory, request.pids)
        if request.start_fd is not None:
            _wait_for_start(request.start_fd)
        return sandbox.run(
            volume.rootfs,
            workload,
            hostname=request.name,
            share_net=request.share_net,
            limits=limits,
            netns=request.netns,
            cgroup_parent=request.cgroup_path,
        )
    finally:
        volume.close()


def _wait_for_start(fd: int) -> None:
    """Block until the OCI runtime's ``start`` writes to the FIFO the enclave inherited from ``create``."""
    os.set_blocking(fd, True)
    try:
        started = os.read(fd, 1)
    finally:
        os.close(fd)
    if not started:
        raise SealpodError("the runtime closed the start FIFO without starting the container")


def boot_reporting(request: BootRequest) -> int:
    """:func:`boot`, with its refusals printed to stderr as one line and a hint; returns the exit status (125 when
    the enclave refused or failed before the workload ran)."""
    try:
        return boot(request)
    except SealpodError as err:
        print(f"sealpod enclave: error: {err}", file=sys.stderr)
        if err.hint:
            print(f"  hint: {err.hint}", file=sys.stderr)
    except OSError as err:
        print(f"sealpod enclave: error: {err}", file=sys.stderr)
    return 125


def terminate_on_sigterm() -> None:
    """A SIGTERM before the workload starts ends the enclave through its cleanup (unmount, remove the mount point)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def main(argv: list[str] | None = None) -> None:
    """``python -m sealpod.enclave REQUEST_JSON``: boot and exit with the workload's status.

    ``python -m sealpod.enclave --prelaunched FD``: wait on FD for a request first (:mod:`.prelaunch`)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) == 2 and args[0] == "--prelaunched" and args[1].isdigit():
        from sealpod.enclave.prelaunch import serve

        os._exit(serve(int(args[1])))
    if len(args) != 1:
        print("usage: python -m sealpod.enclave REQUEST_JSON | --prelaunched FD", file=sys.stderr)
        sys.exit(2)
    terminate_on_sigterm()
    try:
        request = BootRequest.from_json(args[0])
    except SealpodError as err:
        print(f"sealpod enclave: error: {err}", file=sys.stderr)
        os._exit(125)
    code = boot_reporting(request)
    sys.stdout.flush()
    os._exit(code)
