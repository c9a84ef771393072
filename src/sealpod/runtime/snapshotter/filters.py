"""containerd's filter syntax for List, over the fields containerd's snapshotters expose.

``selector ("," selector)*`` where a selector is ``fieldpath [op value]``, op is ``==``, ``!=`` or ``~=`` (a
regular expression), a field path is dotted identifiers or quoted strings (``labels."containerd.io/snapshot.ref"``)
and a value is a quoted string (``"…"``, ``/…/`` or ``|…|``) or a run of characters without space or comma. The
fields are ``kind`` (active, view, committed), ``name``, ``parent`` and ``labels.KEY``. Several filters match when
any of them does; none matches everything.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from sealpod.runtime.snapshotter.errors import InvalidArgumentError
from sealpod.runtime.snapshotter.store import Info, Kind

_KIND_NAMES = {Kind.ACTIVE: "active", Kind.VIEW: "view", Kind.COMMITTED: "committed"}
_QUOTES = {'"', "/", "|"}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "/": "/", "|": "|", "'": "'"}
_FIELD = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Selector:
    """One ``fieldpath op value`` test; ``op`` is "" for presence."""

    path: tuple[str, ...]
    op: str = ""
    value: str = ""

    def match(self, info: Info) -> bool:
        """Whether ``info`` passes this test (with containerd's semantics for missing fields)."""
        value, present = field_value(info, self.path)
        if self.op == "":
            return present
        if self.op == "==":
            return present and value == self.value
        if self.op == "!=":
            return value != self.value
        try:
            return re.search(self.value, value) is not None
        except re.error:
            return False


def field_value(info: Info, path: tuple[str, ...]) -> tuple[str, bool]:
    """The value of a field path on ``info`` and whether it is present."""
    if not path:
        return "", False
    head = path[0]
    if head == "kind":
        name = _KIND_NAMES.get(info.kind)
        return (name, True) if name else ("", False)
    if head == "name":
        return info.name, True
    if head == "parent":
        return info.parent, True
    if head == "labels":
        if not info.labels or len(path) < 2:
            return "", False
        key = ".".join(path[1:])
        return (info.labels[key], True) if key in info.labels else ("", False)
    return "", False


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def error(self, what: str) -> InvalidArgumentError:
        return InvalidArgumentError(f"filter {self.text!r}: {what} at offset {self.pos}")

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def quoted(self) -> str:
        quote = self.text[self.pos]
        self.pos += 1
        out: list[str] = []
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            self.pos += 1
            if ch == quote:
                return "".join(out)
            if ch == "\\" and self.pos < len(self.text):
                nxt = self.text[self.pos]
                self.pos += 1
                out.append(_ESCAPES.get(nxt, "\\" + nxt))
            else:
                out.append(ch)
        raise self.error("unterminated quoted string")

    def field(self) -> str:
        self.skip_space()
        if self.peek() and self.peek() in _QUOTES:
            return self.quoted()
        match = _FIELD.match(self.text, self.pos)
        if match is None:
            raise self.error("expected a field name")
        self.pos = match.end()
        return match.group()

    def selector(self) -> Selector:
        path = [self.field()]
        while self.peek() == ".":
            self.pos += 1
            path.append(self.field())
        self.skip_space()
        op = self.text[self.pos : self.pos + 2]
        if op not in ("==", "!=", "~="):
            return Selector(tuple(path))
        self.pos += 2
        self.skip_space()
        if self.peek() and self.peek() in _QUOTES:
            value = self.quoted()
        else:
            start = self.pos
            while self.pos < len(self.text) and not self.text[self.pos].isspace() and self.text[self.pos] != ",":
                self.pos += 1
            value = self.text[start : self.pos]
        return Selector(tuple(path), op, value)

    def parse(self) -> list[Selector]:
        selectors = [self.selector()]
        while True:
            self.skip_space()
            if self.pos >= len(self.text):
                return selectors
            if self.peek() != ",":
                raise self.error("expected ','")
            self.pos += 1
            selectors.append(self.selector())


def parse(filters: list[str]) -> Callable[[Info], bool]:
    """A predicate for ``filters`` (INVALID_ARGUMENT if one does not parse)."""
    alternatives = [_Parser(f).parse() for f in filters if f != ""]
    if not filters or "" in filters:  # no filter, or an empty one, matches everything
        return lambda info: True
    return lambda info: any(all(s.match(info) for s in selectors) for selectors in alternatives)
