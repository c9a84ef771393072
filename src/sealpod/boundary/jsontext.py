"""JSON text for the host/enclave contract, without importing :mod:`json`.

``sealpod run``'s client is a short-lived process whose start-up is most of a pre-launched enclave's start; the json
package imports :mod:`re` (with :mod:`enum` and :mod:`functools`), ~5 ms of a client that otherwise needs ~10 ms.
This module calls CPython's C accelerator (``_json``, what :mod:`json` itself uses) directly: :func:`dumps` writes
what ``json.dumps`` writes, and :func:`loads` returns what ``json.loads`` returns. Anything the fast path does not
accept (malformed text, other interpreters) goes to :mod:`json` itself, so errors are json's own, word for word.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing's own flag would import typing (~2 ms); mypy honours any flag of this name
if TYPE_CHECKING:
    from types import ModuleType

_accelerator: ModuleType | None
try:
    _accelerator = __import__("_json")  # called below as json.encoder and json.scanner call it
except ImportError:  # an interpreter without CPython's accelerator: json does it all
    _accelerator = None

#: JSON's whitespace, as json.decoder skips it around a document.
_WHITESPACE = " \t\n\r"


def _unsupported(value: object) -> object:
    raise TypeError(f"Object of type {value.__class__.__name__} is not JSON serializable")


class _Options:
    """The decoder settings json.loads uses by default (read by the C scanner as attributes)."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}.__getitem__


_scan = _accelerator.make_scanner(_Options()) if _accelerator is not None else None


def dumps(value: object) -> str:
    """``json.dumps(value)``: ASCII, ``", "`` and ``": "`` separators, keys in insertion order."""
    if _accelerator is None:
        import json

        return json.dumps(value)
    encode = _accelerator.make_encoder(
        {}, _unsupported, _accelerator.encode_basestring_ascii, None, ": ", ", ", False, False, True
    )  # circular-reference markers, default, string encoder, indent, separators, sort_keys, skipkeys, allow_nan
    return "".join(encode(value, 0))


def loads(text: str | bytes) -> object:
    """``json.loads(text)``: the document's value, or json's own :class:`ValueError` for malformed text."""
    if _scan is not None:
        try:
            string = text if isinstance(text, str) else text.decode()
            start = len(string) - len(string.lstrip(_WHITESPACE))
            value, end = _scan(string, start)
            if not string[end:].strip(_WHITESPACE):
                return value
        except (StopIteration, ValueError):
            pass  # json says what is wrong, below
    import json

    return json.loads(text)
