"""Strict, bounded JSON decoding of untrusted bytes, with errors that name what was being read.

Python's ``json`` accepts what a strict parser refuses, and some of it turns into errors outside sealpod's family
later: a key given twice (the last silently wins, so two parsers can read two documents), a lone UTF-16 surrogate
(``"\\ud800"``: not text; encoding it fails far from the parse), a number of thousands of digits (``ValueError``
from the integer conversion), ``NaN``/``Infinity`` (not JSON), and nesting deep enough for ``RecursionError``.
:func:`strict_loads` refuses each with :class:`JsonRefusal`, naming the JSON path where it can.
"""

from __future__ import annotations

import json
from typing import Any

from sealpod.errors import SealpodError

#: The most digits a JSON number may have (an int64 has 19; a float's exponent form is short).
MAX_NUMBER_DIGITS = 64
#: The deepest nesting accepted (containers' policies, manifests and KBS messages are a few levels deep).
MAX_DEPTH = 64


class JsonRefusal(ValueError):
    """What makes a document not strict JSON."""


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise JsonRefusal(f"the key {key!r} appears twice in one object")
        out[key] = value
    return out


def _number(text: str) -> int:
    if len(text) > MAX_NUMBER_DIGITS:
        raise JsonRefusal(f"a number of {len(text)} digits (at most {MAX_NUMBER_DIGITS})")
    return int(text)


def _float(text: str) -> float:
    if len(text) > MAX_NUMBER_DIGITS:
        raise JsonRefusal(f"a number of {len(text)} characters (at most {MAX_NUMBER_DIGITS})")
    return float(text)


def _constant(text: str) -> Any:
    raise JsonRefusal(f"{text} is not a JSON value")


def _check_text(data: Any) -> None:
    """Refuse a lone surrogate in any key or string, and nesting deeper than :data:`MAX_DEPTH`, naming the path."""
    pending: list[tuple[Any, str, int]] = [(data, "$", 0)]
    while pending:
        value, path, depth = pending.pop()
        if isinstance(value, str):
            if not value.isascii():
                _encodable(value, path)
        elif isinstance(value, dict | list):
            if depth >= MAX_DEPTH:
                raise JsonRefusal(f"{path} is nested more than {MAX_DEPTH} levels deep")
            if isinstance(value, dict):
                for key, item in value.items():
                    if not key.isascii():
                        _encodable(key, f"{path} (a key)")
                    pending.append((item, f"{path}.{key}", depth + 1))
            else:
                pending.extend((item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value))


def _encodable(text: str, path: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise JsonRefusal(f"{path} holds a lone UTF-16 surrogate, which is not text") from None


def strict_loads(raw: bytes | str) -> Any:
    """``json.loads`` refusing duplicate keys, lone surrogates, over-long numbers, NaN/Infinity and deep nesting
    (each a :class:`JsonRefusal`; malformed JSON stays ``json.JSONDecodeError``, also a ``ValueError``)."""
    try:
        data = json.loads(
            raw, object_pairs_hook=_pairs, parse_int=_number, parse_float=_float, parse_constant=_constant
        )
    except RecursionError:
        raise JsonRefusal("the document is nested too deeply") from None
    _check_text(data)
    return data


def load_object(raw: bytes, what: str, limit: int, error: type[SealpodError]) -> dict[str, Any]:
    """Decode ``raw`` as a strict JSON object (:func:`strict_loads`) of at most ``limit`` bytes, else raise
    ``error`` naming ``what``."""
    if len(raw) > limit:
        raise error(f"{what} is {len(raw)} bytes, over the {limit}-byte bound")
    try:
        data = strict_loads(raw)
    except JsonRefusal as err:
        raise error(f"{what} is not strict JSON: {err}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise error(f"{what} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise error(f"{what} must be a JSON object, not {type(data).__name__}")
    return data
