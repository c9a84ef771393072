"""sealpod: process-based confidential containers."""

import sys

__version__ = "0.1.0"

# httpx imports its own command line (click, rich, pygments: ~55 ms and ~9 MiB per process) whenever those are
# installed, and typer installs them. sealpod never runs httpx's CLI: a None entry makes that one import fail, and
# httpx then defines a stub in its place (its `from ._main import main` is guarded by `except ImportError`).
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
