"""The signature policy's command-line options, shared by ``sealpod pull`` and ``sealpod image verify`` (the check
itself is :mod:`sealpod.cli.policy_check`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sealpod.cli.policy_check import enforce

__all__ = ["PolicyOption", "RegistriesDOption", "enforce"]

PolicyOption = Annotated[
    Path | None,
    typer.Option("--policy", help="containers-policy.json to enforce [default: /etc/containers/policy.json]"),
]
RegistriesDOption = Annotated[
    Path | None,
    typer.Option(
        "--registries-d",
        help="registries.d directory (lookaside, use-sigstore-attachments) "
        "[default: ~/.config/containers/registries.d if it exists, else /etc/containers/registries.d]",
    ),
]
