"""``sealpod run``'s body, from its arguments to the workload's exit status, without typer: the typer command
(:mod:`sealpod.cli.run`) and the fast path (:mod:`sealpod.cli.fast`) both call :func:`start`.

A start handed to a pre-launched enclave imports only this module, the boot request, the launcher and the pool's
client, which import only the interpreter's built-in modules: what is needed only for some options (the
container records of a detached run, pathlib) is imported where it is used."""

from __future__ import annotations

import os

from sealpod.cli.values import parse_size

TYPE_CHECKING = False  # typing's own flag would import typing (~2 ms); mypy honours any flag of this name
if TYPE_CHECKING:
    from pathlib import Path


def start(
    image: str,
    command: list[str] | None,
    kbs: str,
    env: list[str] | None,
    volume: list[str] | None,
    name: str | None,
    detach: bool,
    net: str,
    rootfs: str,
    rm: bool,
    sim: bool,
    tls_verify: bool,
    kbs_ca: str | None,
    memory: str | None,
    pids: int | None,
    no_pool: bool,
    policy_uri: str | None,
    init_data: Path | None,
) -> int:
    """``sealpod run``'s body, for typer's command and the fast path (:mod:`sealpod.cli.fast`) alike: the
    workload's exit status (0 for a detached start, whose container id is printed)."""
    from sealpod.boundary.request import BootRequest
    from sealpod.errors import SealpodError
    from sealpod.runtime.launch import run_enclave

    if not kbs:
        raise SealpodError("no KBS given", hint="pass --kbs URL (the key broker that holds this image's keys)")
    if net not in ("none", "host"):
        raise SealpodError(f"--net {net!r} is not supported", hint="use 'none' or 'host'")
    if rootfs not in ("gocryptfs", "memory"):
        raise SealpodError(f"--rootfs {rootfs!r} is not supported", hint="use 'gocryptfs' or 'memory'")
    request = BootRequest(
        image=image,
        kbs_url=kbs,
        command=list(command or []),
        env=list(env or []),
        name=name or "sealpod",
        share_net=net == "host",
        allow_sim=sim,
        registry_tls_verify=tls_verify,
        kbs_ca_file=kbs_ca,
        policy_uri=policy_uri,
        memory=parse_size(memory) if memory else None,
        pids=pids,
        rootfs=rootfs,
        init_data=_read_init_data(init_data) if init_data else None,
        volumes=[_absolute_volume(item) for item in volume or []],
    )
    request.volume_specs()
    if detach:
        from sealpod.runtime.containers import create, start_detached

        container = create(request, name, auto_remove=rm)
        start_detached(container)
        print(container.id, flush=True)
        return 0
    return run_enclave(request, use_pool=not no_pool)


def _read_init_data(path: Path) -> str:
    """The init-data file's text (parsed and checked in the enclave, which binds it into its evidence)."""
    from sealpod.errors import UsageError

    try:
        with path.open("rb") as handle:
            raw = handle.read(64 * 1024 + 1)
    except OSError as err:
        raise UsageError(f"cannot read the init-data {path}: {err.strerror}") from None
    if len(raw) > 64 * 1024:
        raise UsageError(f"the init-data {path} is over 64 KiB")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"the init-data {path} is not UTF-8 text") from None


def _absolute_volume(item: str) -> str:
    """``-v``'s value with a relative source made absolute (as podman does)."""
    source, sep, rest = item.partition(":")
    if sep and source and not source.startswith("/"):
        return f"{os.path.realpath(source)}:{rest}"
    return item
