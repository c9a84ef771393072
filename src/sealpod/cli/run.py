"""``sealpod run``: run an encrypted, signed image in the generic enclave, in the manner of ``podman run``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sealpod.cli.common import TlsVerify, parse_bool
from sealpod.cli.common import run as run_action
from sealpod.cli.run_start import start


def run(
    image: Annotated[str, typer.Argument(help="Image reference, e.g. registry.example/app:v1 or oci:DIR:TAG")],
    command: Annotated[
        list[str] | None, typer.Argument(help="Replaces the image's Cmd, if the tenant's run policy allows it.")
    ] = None,
    kbs: Annotated[
        str, typer.Option("--kbs", help="Key broker URL, e.g. http://127.0.0.1:8080", show_default=False)
    ] = "",
    env: Annotated[
        list[str] | None,
        typer.Option("-e", "--env", help="NAME=VALUE added to the image's Env, if the run policy allows NAME."),
    ] = None,
    volume: Annotated[
        list[str] | None,
        typer.Option(
            "-v",
            "--volume",
            help="SOURCE:DESTINATION[:ro] binds a host path into the workload's rootfs; in a read-only volume each "
            "file holding only a sealed secret (sealed.<JWS>) is unsealed in the enclave. Where volumes may go is "
            "the tenant's run policy's (allow_volumes).",
        ),
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="The container's name and hostname [default: generated].")
    ] = None,
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="Run in the background; see sealpod ps, logs, stop, rm.")
    ] = False,
    net: Annotated[str, typer.Option("--net", help="'none' (own empty network namespace) or 'host'.")] = "none",
    rootfs: Annotated[
        str,
        typer.Option(
            "--rootfs",
            help="'gocryptfs': encrypted on the host disk, key sealed to the enclave, reused by the next run of the "
            "same image; 'memory': a tmpfs only the enclave sees, gone at exit.",
        ),
    ] = "gocryptfs",
    rm: Annotated[
        bool,
        typer.Option("--rm", help="With -d: remove the container's record when it exits (foreground runs keep none)."),
    ] = False,
    sim: Annotated[
        bool, typer.Option("--sim", help="Use the simulated SGX platform when there is no SGX (no secrecy from root).")
    ] = False,
    tls_verify: TlsVerify = "true",
    kbs_ca: Annotated[str | None, typer.Option("--kbs-ca", help="CA file for the KBS's TLS certificate.")] = None,
    memory: Annotated[str | None, typer.Option("--memory", "-m", help="Memory limit, e.g. 64m or 1g.")] = None,
    pids: Annotated[int | None, typer.Option("--pids-limit", help="Most processes the workload may have.")] = None,
    no_pool: Annotated[
        bool,
        typer.Option(
            "--no-pool", help="Start a new enclave even when the node's enclave pool (sealpod node enclave-pool) runs."
        ),
    ] = False,
    policy_uri: Annotated[
        str | None, typer.Option(help="Where the signature policy is [default: kbs:///default/security-policy/test]")
    ] = None,
    init_data: Annotated[
        Path | None,
        typer.Option(
            "--init-data",
            help="CoCo init-data TOML (version, algorithm, data with aa.toml/cdh.toml): the pod's own KBS and "
            "settings; its digest is bound into the enclave's evidence.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Attest to the KBS, pull, verify, decrypt and unpack IMAGE inside the enclave, and run it sandboxed.

    The host passes only the image reference and the KBS address; the policy, registry credentials and keys go
    from the KBS to the attested enclave. stdin, stdout, stderr and the exit status pass through.
    """

    code = run_action(
        lambda: start(
            image, command, kbs, env, volume, name, detach, net, rootfs, rm, sim, parse_bool(tls_verify), kbs_ca,
            memory, pids, no_pool, policy_uri, init_data,
        )
    )  # fmt: skip
    if code:
        raise typer.Exit(code)
