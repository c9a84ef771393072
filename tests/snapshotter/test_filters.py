"""containerd's filter syntax as List receives it."""

from __future__ import annotations

import pytest

from sealpod.runtime.snapshotter.errors import InvalidArgumentError
from sealpod.runtime.snapshotter.filters import parse
from sealpod.runtime.snapshotter.store import Info, Kind

REF = "sha256:" + "a" * 64
INFO = Info(
    name="ns/3/sha256:abc",
    parent="ns/2/base layer",
    kind=Kind.COMMITTED,
    labels={"containerd.io/snapshot.ref": REF, "plain": "x,y"},
)


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        # exactly what containerd's metadata layer sends after a remote ALREADY_EXISTS
        (f'labels."containerd.io/snapshot.ref"=={REF},parent=="ns/2/base layer"', True),
        (f'labels."containerd.io/snapshot.ref"=={REF},parent==""', False),
        ('labels."containerd.io/snapshot.ref"', True),
        ("labels.missing", False),
        ("labels", False),
        ("kind==committed", True),
        ("kind==active", False),
        ("kind!=active", True),
        ("name==ns/3/sha256:abc", True),
        ("name~=^ns/3/", True),
        ("name~=/^ns\\/4\\//", False),
        ("name~=|^ns/3/|", True),
        ('labels.plain=="x,y"', True),
        ("labels.missing!=x", True),
        ("  name == ns/3/sha256:abc , kind==committed ", True),
        ('"name"==ns/3/sha256:abc', True),
        ("name~=[", False),  # an invalid regular expression matches nothing
        ("unknown==x", False),
        ("unknown!=x", True),
    ],
)
def test_selectors(expr: str, expected: bool) -> None:
    assert parse([expr])(INFO) is expected


def test_any_of_several_filters_and_empty_ones() -> None:
    assert parse(["name==nope", "kind==committed"])(INFO)
    assert not parse(["name==nope", "kind==view"])(INFO)
    assert parse([])(INFO)
    assert parse(["name==nope", ""])(INFO)


@pytest.mark.parametrize("expr", ["9name==x", "name==x,", 'labels."unterminated==x', "name==x y", ".name", "name=x"])
def test_malformed_filters_are_invalid_arguments(expr: str) -> None:
    with pytest.raises(InvalidArgumentError):
        parse([expr])
