"""The boundary's JSON text is json's, value for value and error for error (json itself is the reference)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import pytest

from sealpod.boundary import jsontext

VALUES: list[object] = [
    {"image": "r/a:v1", "kbs_url": "http://k", "command": ["sh", "-c", 'echo "hi"\n\t\\'], "memory": 1 << 40},
    {"unicode": "héllo \u2028 😀 \x00", "empty": "", "nested": {"a": [1, 2.5, -0.0, 1e300, None, True]}},
    [],
    {},
    "a string",
    -17,
    3.141592653589793,
    None,
    False,
    {"keys keep their order": 1, "a": 2, "0": 3},
]


@pytest.mark.parametrize("value", VALUES)
def test_dumps_writes_what_json_writes_and_loads_reads_it_back(value: object) -> None:
    text = jsontext.dumps(value)
    assert text == json.dumps(value)
    assert jsontext.loads(text) == json.loads(text) == value
    assert jsontext.loads(text.encode()) == value


def test_non_finite_numbers_are_json_s() -> None:
    assert jsontext.dumps([math.inf, -math.inf]) == json.dumps([math.inf, -math.inf])
    assert jsontext.loads("[Infinity, -Infinity]") == [math.inf, -math.inf]
    assert math.isnan(jsontext.loads("NaN"))  # type: ignore[arg-type]


def test_whitespace_around_a_document_is_skipped() -> None:
    assert jsontext.loads(' \n\t {"a": 1} \r\n') == {"a": 1}


def _outcome(load: Callable[[str | bytes], object], text: str | bytes) -> tuple[str, object]:
    try:
        return "value", load(text)
    except ValueError as err:
        return f"refused ({type(err).__name__})", str(err)


@pytest.mark.parametrize(
    "text",
    ["", "   ", "{not json", '{"a": 1} x', '{"a": 1}{}', "[1,]", '{"a" 1}', '"\x01"', "\ufeff{}", "01", "[1] ]"],
)
def test_malformed_text_is_refused_with_json_s_own_message(text: str) -> None:
    outcome = _outcome(jsontext.loads, text)
    assert outcome[0] == "refused (JSONDecodeError)"
    assert outcome == _outcome(json.loads, text)


@pytest.mark.parametrize(
    "data", [b"\xff\xfe{\x00}\x00", '{"a": "é"}'.encode("utf-16"), b'{"a": "\xe9"}', b"\xef\xbb\xbf{}"]
)
def test_bytes_that_are_not_utf8_are_json_s_to_refuse_or_read(data: bytes) -> None:
    assert _outcome(jsontext.loads, data) == _outcome(json.loads, data)


def test_a_value_json_cannot_write_is_refused_as_json_refuses_it() -> None:
    with pytest.raises(TypeError, match="Object of type set is not JSON serializable"):
        jsontext.dumps({"a": {1}})
    looped: list[object] = []
    looped.append(looped)
    with pytest.raises(ValueError, match="Circular reference detected"):
        jsontext.dumps(looped)
