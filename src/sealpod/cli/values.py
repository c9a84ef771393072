"""Option values shared by the typer commands and the fast path (:mod:`sealpod.cli.fast`): booleans and sizes.

Imported on the way to every pooled ``sealpod run``: no imports at all (the regular expression a size would
naturally be, and the re module, are ~4 ms of that client's ~10 ms)."""

from __future__ import annotations

from sealpod.errors import SealpodError

_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def bool_value(value: str) -> bool | None:
    """``true``/``false`` (also 1/0, yes/no, any case), as skopeo's ``--tls-verify=false``; None for anything else."""
    return _BOOLS.get(value.lower())


def parse_size(text: str) -> int:
    """``64m``, ``1g``, ``512k`` or bytes (an optional ``b`` after either, any case), as podman's ``--memory``."""
    size = text.strip().lower()
    size = size.removesuffix("b")
    unit = size[-1:] if size[-1:] in ("k", "m", "g") else ""
    number = size[: len(size) - len(unit)]
    if not number.isdecimal():
        raise SealpodError(f"memory size {text!r} is not a number with an optional k, m or g suffix")
    return int(number) * _UNITS[unit]
