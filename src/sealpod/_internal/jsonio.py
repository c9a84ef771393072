"""Bounded JSON decoding of untrusted bytes, with errors that name what was being read."""

from __future__ import annotations

import json
from typing import Any

from sealpod.errors import SealpodError


def load_object(raw: bytes, what: str, limit: int, error: type[SealpodError]) -> dict[str, Any]:
    """Decode ``raw`` as a JSON object of at most ``limit`` bytes, else raise ``error`` naming ``what``."""
    if len(raw) > limit:
        raise error(f"{what} is {len(raw)} bytes, over the {limit}-byte bound")
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise error(f"{what} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise error(f"{what} must be a JSON object, not {type(data).__name__}")
    return data
