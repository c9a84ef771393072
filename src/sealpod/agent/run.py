"""The agent's one call for a run: attest, fetch what the run needs, decide on the sealed rootfs, pull and verify.

:func:`prepare_run` is everything the enclave does between the host's request and the workload's start that needs
the KBS: the attested session, the tenant's run policy (what the host may change), the signature policy and
credentials, the reuse of a sealed rootfs that already holds the verified image, and otherwise the pull. The enclave
(:mod:`sealpod.enclave.boot`) supplies the TEE's attester and a way to open the volume the rootfs lives on; it gets
back the rootfs and the workload's command line and environment, all decided from what the tenant signed.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from sealpod.agent.pull import DEFAULT_POLICY_URI, AgentSettings, optional_resource, verify_image
from sealpod.agent.run_policy import DEFAULT_RUN_POLICY_URI, RunPolicy, image_argv
from sealpod.boundary.request import BootRequest
from sealpod.kbs.client.rcar import KbsClient
from sealpod.oci.pull import PullResult
from sealpod.tee import Attester


class Volume(Protocol):
    """Where the rootfs lives (the enclave's sealed gocryptfs volume, a tmpfs, a plain directory)."""

    rootfs: Path

    def pulled_digest(self) -> str | None:
        """The manifest digest of the image a finished pull left in :attr:`rootfs`, if any."""
        ...

    def discard(self) -> None:
        """Drop what :attr:`rootfs` holds (a stale or partial image)."""
        ...

    def mark_pulled(self, digest: str) -> None:
        """Remember that :attr:`rootfs` holds the verified image ``digest`` (for a warm restart)."""
        ...

    def close(self, *, remove: bool = False) -> None:
        """Release the volume; ``remove`` also deletes what it holds."""
        ...


@dataclass
class PlainDirectory:
    """A :class:`Volume` that is just a directory: nothing sealed, nothing reused (tools and tests)."""

    rootfs: Path

    def pulled_digest(self) -> str | None:
        return None

    def discard(self) -> None:
        shutil.rmtree(self.rootfs, ignore_errors=True)

    def mark_pulled(self, digest: str) -> None:
        """Nothing to remember."""

    def close(self, *, remove: bool = False) -> None:
        if remove:
            self.discard()


@dataclass
class PreparedRun:
    """A run the agent made ready: the volume holding the verified rootfs, and how the workload starts."""

    volume: Volume
    result: PullResult
    #: Whether the sealed rootfs already held the verified image (no layer was fetched).
    reused: bool
    #: The pod spec's whole command line when the run policy lets it replace the image's (else None).
    argv: list[str] | None = None
    #: The variables the host set that the run policy lets through (``-e`` and the pod's).
    env: list[str] = field(default_factory=list)
    #: The names of the pod's variables the run policy dropped.
    dropped: list[str] = field(default_factory=list)


def prepare_run(tee: Attester, request: BootRequest, open_volume: Callable[[], Volume]) -> PreparedRun:
    """Attest to the KBS, check the host's request against the tenant's run policy, verify the image's signatures
    and pull it into the volume ``open_volume`` gives (or reuse what the sealed volume already holds).

    Nothing is fetched before the KBS accepted the evidence and the run policy allowed the request; no layer before
    the signatures passed. The volume opens while the policy, manifest and signatures are fetched; on any failure it
    is closed, and removed again when this run made it.
    """
    settings = AgentSettings(
        policy_uri=request.policy_uri or DEFAULT_POLICY_URI, tls_verify=request.registry_tls_verify
    )
    with KbsClient(request.kbs_url, tee, ca_file=request.kbs_ca_file) as client:
        client.attest()
        run_policy = _run_policy(client, request)
        # the volume (gocryptfs and loop mounts, ~15 ms) opens while the policy, manifest and signatures are fetched
        with ThreadPoolExecutor(1, thread_name_prefix="volume") as opener:
            opening = opener.submit(open_volume)
            try:
                verified = verify_image(request.image, client, settings)
            except BaseException:
                _close_when_opened(opening)
                raise
        with verified:
            volume = opening.result()
            held = volume.pulled_digest()
            digest = verified.resolved.manifest_digest
            try:
                argv = run_policy.pod_argv(request.argv, image_argv(verified.resolved.config), DEFAULT_RUN_POLICY_URI)
                container = verified.resolved.config.config
                pod_env, dropped = run_policy.pod_env(request.host_env, list(container.env or []) if container else [])
                if held == digest:
                    result = PullResult(verified.resolved, volume.rootfs)
                else:
                    if held is not None:
                        volume.discard()
                    result = verified.fetch_into(volume.rootfs)
                    volume.mark_pulled(digest)
            except BaseException:
                volume.close(remove=held is None)
                raise
    return PreparedRun(volume, result, held == digest, argv, [*request.env, *pod_env], dropped)


def _run_policy(client: KbsClient, request: BootRequest) -> RunPolicy:
    """The tenant's run policy, fetched only when the host asks to change something (else the defaults apply),
    with the host's ``sealpod run`` command and variables checked against it."""
    if not (request.command or request.env or request.argv or request.host_env):
        return RunPolicy()
    raw = optional_resource(client, DEFAULT_RUN_POLICY_URI)
    run_policy = RunPolicy.parse(raw, DEFAULT_RUN_POLICY_URI) if raw is not None else RunPolicy()
    run_policy.check(request.command, request.env, DEFAULT_RUN_POLICY_URI)
    return run_policy


def _close_when_opened(opening: Future[Volume]) -> None:
    """Close a volume whose opening was under way when the run failed (a new one is removed again)."""
    try:
        volume = opening.result()
    except BaseException:
        return
    volume.close(remove=volume.pulled_digest() is None)
