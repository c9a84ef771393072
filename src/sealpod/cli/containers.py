"""``sealpod ps``, ``logs``, ``stop``, ``rm``: the containers started with ``sealpod run -d``."""

from __future__ import annotations

import sys
import time
from typing import Annotated

import typer

from sealpod.cli.common import out_console, run

NameArg = Annotated[str, typer.Argument(help="Container name, id or unique id prefix.")]


def ps(all_: Annotated[bool, typer.Option("--all", "-a", help="Include containers that exited.")] = False) -> None:
    """List the detached containers (running ones; -a for all)."""

    def action() -> None:
        from sealpod.runtime.containers import all_containers

        rows = [c for c in all_containers() if all_ or c.running()]
        out_console.print(f"{'CONTAINER ID':14} {'NAME':24} {'STATUS':12} {'CREATED':26} IMAGE", highlight=False)
        for c in rows:
            out_console.print(f"{c.id[:12]:14} {c.name:24} {c.status():12} {c.created:26} {c.image}", highlight=False)

    run(action)


def logs(
    name: NameArg,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing until the container exits.")] = False,
) -> None:
    """Print a container's output (stdout and stderr, combined)."""

    def action() -> None:
        from sealpod.runtime.containers import find

        container = find(name)
        with open(container.log, "rb") as log:
            while True:
                chunk = log.read(65536)
                if chunk:
                    sys.stdout.buffer.write(chunk)
                    sys.stdout.flush()
                    continue
                if not follow or not container.running():
                    break
                time.sleep(0.1)

    run(action)


def stop(
    name: NameArg,
    time_: Annotated[int, typer.Option("--time", "-t", help="Seconds to wait after SIGTERM before SIGKILL.")] = 10,
) -> None:
    """Stop a container: SIGTERM to the workload, SIGKILL after --time seconds."""

    def action() -> None:
        from sealpod.runtime.containers import find
        from sealpod.runtime.containers import stop as stop_container

        container = find(name)
        code = stop_container(container, time_)
        status = f"exited ({code})" if code is not None else container.status()
        typer.echo(f"{container.name}: {status}")

    run(action)


def rm(
    name: NameArg,
    force: Annotated[bool, typer.Option("--force", "-f", help="Stop it first if it runs.")] = False,
) -> None:
    """Remove a container's record and log (its sealed rootfs stays for the next run of the image)."""

    def action() -> None:
        from sealpod.runtime.containers import find, remove

        container = find(name)
        remove(container, force=force)
        typer.echo(container.name)

    run(action)
