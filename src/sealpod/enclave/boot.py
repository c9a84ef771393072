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

from sealpod._internal.cgroups import Limits, join_container, valid_container_path
from sealpod.agent.cdh_api import PORT as CDH_PORT
from sealpod.agent.cdh_api import CdhApi
from sealpod.agent.run import prepare_run
from sealpod.agent.run_policy import DEFAULT_RUN_POLICY_URI
from sealpod.attestation.init_data import InitData
from sealpod.boundary.request import BootRequest
from sealpod.enclave import sandbox
from sealpod.enclave.measure import running_identity
from sealpod.enclave.rootfs import GocryptfsRootfs, MemoryRootfs, private_mount_namespace
from sealpod.enclave.sealing import sealing_key
from sealpod.enclave.volumes import MountedVolumes, mount_volumes
from sealpod.enclave.workload import workload_for
from sealpod.enclave.workload_net import WorkloadNetwork, workload_network
from sealpod.errors import SealpodError
from sealpod.tee import Attester, detect


def attester(allow_sim: bool, init_data: InitData | None = None) -> Attester:
    """Real SGX when present; else the simulated platform attesting this enclave's measured identity, launched with
    the init-data's digest as its CONFIGID."""
    try:
        tee = detect()
    except SealpodError:
        if not allow_sim:
            raise
    else:
        if init_data is not None:
            raise SealpodError(
                "init-data needs its digest in the enclave's CONFIGID, which this enclave's launcher does not set yet",
                hint="run without init-data on this TEE, or on the simulated platform",
            )
        return tee
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
        config_id=init_data.config_id if init_data is not None else bytes(64),
    )


def _open_volume(request: BootRequest, tee: Attester) -> MemoryRootfs | GocryptfsRootfs:
    if request.rootfs == "memory":
        return MemoryRootfs()
    if request.rootfs == "gocryptfs":
        return GocryptfsRootfs(request.image, sealing_key(tee))
    raise SealpodError(f"unknown rootfs kind {request.rootfs!r}", hint="use gocryptfs or memory")


def boot(request: BootRequest) -> int:
    """Attest, pull, verify, decrypt and unpack (or reopen a sealed rootfs), then run the workload.

    Nothing touches the disk before the KBS accepted the evidence and the run policy allowed the request; a rootfs
    made for a pull that then failed is removed again (:func:`sealpod.agent.run.prepare_run`).
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
    init_data = InitData.parse(request.init_data, "the pod's init-data") if request.init_data is not None else None
    tee = attester(request.allow_sim, init_data)
    private_mount_namespace()
    prepared = prepare_run(tee, request, lambda: _open_volume(request, tee), init_data)
    volume = prepared.volume
    network: WorkloadNetwork | None = None
    api: CdhApi | None = None
    mounted: MountedVolumes | None = None
    try:
        if prepared.reused:
            print(
                f"sealpod: reopened the sealed rootfs of {prepared.result.image.manifest_digest}: signatures checked, "
                "no layer pulled",
                file=sys.stderr,
            )
        if prepared.dropped:
            print(f"sealpod: the run policy drops the host's variables {', '.join(prepared.dropped)}", file=sys.stderr)
        mounted = mount_volumes(
            volume.rootfs,
            request.volume_specs(),
            prepared.unseal,
            lambda spec, covers: prepared.run_policy.check_volume(spec.destination, covers, DEFAULT_RUN_POLICY_URI),
        )
        if mounted.unsealed:
            print(f"sealpod: unsealed {len(mounted.unsealed)} file(s) in the volumes", file=sys.stderr)
        workload = workload_for(
            prepared.result.image.config, volume.rootfs, request.command, prepared.env, prepared.argv
        )
        limits = Limits(request.memory, request.pids)
        netns = request.netns
        if prepared.run_policy.cdh_api and not request.share_net:
            network = workload_network(CDH_PORT, request.netns)
            netns = network.netns
            if network.listener is not None:
                api = CdhApi(prepared.client.get_resource, tee.tee, prepared.run_policy.cdh_resources)
                api.serve(network.listener)
            else:
                print(f"sealpod: another enclave of this pod serves the CDH API on port {CDH_PORT}", file=sys.stderr)
        elif prepared.run_policy.cdh_api:
            print(
                "sealpod: no CDH API: the workload shares the host's network, where the host could reach it",
                file=sys.stderr,
            )
        else:
            prepared.close()  # the tenant switched the API off: the session is not needed any more
        if request.start_fd is not None:
            _wait_for_start(request.start_fd)
        return sandbox.run(
            volume.rootfs,
            workload,
            hostname=request.name,
            share_net=request.share_net,
            limits=limits,
            netns=netns,
            cgroup_parent=request.cgroup_path,
        )
    finally:
        if api is not None:
            api.close()
        if network is not None:
            network.close()
        if mounted is not None:
            mounted.close()
        prepared.close()
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
