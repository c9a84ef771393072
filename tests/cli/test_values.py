"""Option values as podman and skopeo read them: sizes and booleans."""

from __future__ import annotations

import re

import pytest

from sealpod.cli.values import bool_value, parse_size
from sealpod.errors import SealpodError


@pytest.mark.parametrize(
    ("text", "size"),
    [("512", 512), ("10b", 10), ("64m", 64 << 20), ("64MB", 64 << 20), (" 1g ", 1 << 30), ("3K", 3 << 10), ("0", 0)],
)
def test_a_size_is_bytes_with_an_optional_unit(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "lots", "m", "kb", "1.5g", "-1m", "+1m", "1t", "1bb", "1mm", "1 m", "0x10", "²"])
def test_anything_else_is_refused_naming_it(text: str) -> None:
    with pytest.raises(SealpodError, match=re.escape(f"memory size {text!r} is not a number")):
        parse_size(text)


def test_booleans_are_skopeo_s() -> None:
    assert [bool_value(v) for v in ("true", "FALSE", "1", "0", "yes", "No")] == [True, False, True, False, True, False]
    assert bool_value("maybe") is None
