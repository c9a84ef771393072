"""The ``sealpod`` console script: ``sealpod run`` through its fast path when it can (:mod:`sealpod.cli.fast`),
everything else through the typer app (:mod:`sealpod.cli.app`)."""

from __future__ import annotations

import sys


def main() -> None:
    """Console-script entry point."""
    from sealpod.cli import fast

    code = fast.run(sys.argv[1:])
    if code is not None:
        sys.stdout.flush()
        sys.exit(code)
    from sealpod.cli.app import main as typer_main

    typer_main()
