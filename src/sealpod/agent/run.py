"""The agent's one call for a run: attest, fetch what the run needs, decide on the sealed rootfs, pull and verify.

:func:`prepare_run` is everything the enclave does between the host's request and the workload's start that needs
the KBS: the attested session, the tenant's run policy (what the host may change), the signature policy and
credentials, the reuse of a sealed rootfs that already holds the verified image, and otherwise the pull. The enclave
(:mod:`sealpod.enclave.boot`) supplies the TEE's attester and a way to open the volume the rootfs lives on; it gets
back the rootfs and the workload's command line and environment, all decided from what the tenant signed.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from sealpod.agent.pull import (
    DEFAULT_CREDENTIALS_URI,
    DEFAULT_POLICY_URI,
    AgentSettings,
    optional_resource,
    verify_image,
)
from sealpod.agent.run_policy import DEFAULT_RUN_POLICY_URI, RunPolicy, check_encrypted_layers, image_argv
from sealpod.agent.secrets import is_sealed, unseal_environment
from sealpod.attestation.init_data import InitData
from sealpod.boundary.request import BootRequest
from sealpod.kbs.client.rcar import KbsClient
from sealpod.kbs.client.sealed import unseal
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
    """A run the agent made ready: the volume holding the verified rootfs, how the workload starts, and the
    attested KBS session (kept open for the workload's CDH API: :meth:`close` it when the run ends)."""

    volume: Volume
    result: PullResult
    #: Whether the sealed rootfs already held the verified image (no layer was fetched).
    reused: bool
    client: KbsClient
    run_policy: RunPolicy
    #: The pod spec's whole command line when the run policy lets it replace the image's (else None).
    argv: list[str] | None = None
    #: The variables to add to the image's: the host's that the run policy lets through (``-e`` and the pod's)
    #: and the image's own sealed ones, all with their secrets unsealed.
    env: list[str] = field(default_factory=list)
    #: The names of the pod's variables the run policy dropped.
    dropped: list[str] = field(default_factory=list)

    def unseal(self, sealed: str) -> bytes:
        """The secret behind the sealed secret ``sealed.<JWS>``, through the run's attested session."""
        return unseal(sealed, self.client)

    def close(self) -> None:
        """End the KBS session (the volume is the caller's to close)."""
        self.client.close()


def kbs_for(request: BootRequest, init_data: InitData | None) -> tuple[str, str | None, str | None]:
    """The KBS URL, CA file and CA certificate (PEM) of the run: the init-data's when it names one, else the
    node's (the request's)."""
    settings = init_data.kbs_settings() if init_data is not None else None
    if settings is None:
        return request.kbs_url, request.kbs_ca_file, None
    if settings.url.rstrip("/") != request.kbs_url.rstrip("/"):
        print(f"sealpod: the pod's init-data chooses the KBS at {settings.url}", file=sys.stderr)
    return settings.url, None if settings.cert else request.kbs_ca_file, settings.cert


def prepare_run(
    tee: Attester, request: BootRequest, open_volume: Callable[[], Volume], init_data: InitData | None = None
) -> PreparedRun:
    """Attest to the KBS, check the host's request against the tenant's run policy, verify the image's signatures,
    unseal the workload's sealed variables and pull the image into the volume ``open_volume`` gives (or reuse
    what the sealed volume already holds).

    ``init_data`` is the pod's (its digest is already in ``tee``'s evidence): it chooses the KBS and the signature
    policy's location. Nothing is fetched before the KBS accepted the evidence and the run policy allowed the
    request; no layer before the signatures passed. The volume opens while the policy, manifest and signatures are
    fetched; on any failure it is closed, and removed again when this run made it, and the session is closed.
    """
    policy_uri = (init_data and init_data.image_setting("image_security_policy_uri")) or request.policy_uri
    credentials_uri = init_data.image_setting("authenticated_registry_credentials_uri") if init_data else None
    settings = AgentSettings(
        policy_uri=policy_uri or DEFAULT_POLICY_URI,
        credentials_uri=credentials_uri or DEFAULT_CREDENTIALS_URI,
        tls_verify=request.registry_tls_verify,
    )
    url, ca_file, ca_pem = kbs_for(request, init_data)
    client = KbsClient(url, tee, ca_file=ca_file, ca_pem=ca_pem, init_data=init_data.text if init_data else None)
    try:
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
            resolved = verified.resolved
            try:
                check_encrypted_layers(
                    run_policy, [(d.media_type, d.digest) for d in resolved.manifest.layers], request.image
                )
                argv = run_policy.pod_argv(request.argv, image_argv(resolved.config), DEFAULT_RUN_POLICY_URI)
                image_env = list(resolved.config.config.env or []) if resolved.config.config else []
                pod_env, dropped = run_policy.pod_env(request.host_env, image_env)
                env = [
                    *unseal_environment([i for i in image_env if is_sealed(i.partition("=")[2])], client, "image"),
                    *unseal_environment(request.env, client, "sealpod run -e"),
                    *unseal_environment(pod_env, client, "pod spec"),
                ]
                if held == resolved.manifest_digest:
                    result = PullResult(resolved, volume.rootfs)
                else:
                    if held is not None:
                        volume.discard()
                    result = verified.fetch_into(volume.rootfs, run_policy.unpack_limits())
                    volume.mark_pulled(resolved.manifest_digest)
            except BaseException:
                volume.close(remove=held is None)
                raise
    except BaseException:
        client.close()
        raise
    return PreparedRun(volume, result, held == resolved.manifest_digest, client, run_policy, argv, env, dropped)


def _run_policy(client: KbsClient, request: BootRequest) -> RunPolicy:
    """The tenant's run policy (the defaults when the KBS holds none), with the host's ``sealpod run`` command and
    variables checked against it."""
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
