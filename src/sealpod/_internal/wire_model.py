"""Frozen dataclasses read from decoded JSON strictly and written back in their wire form, without pydantic.

A model lists its fields once (:class:`WireField`: the attribute, its JSON key, a check); :meth:`WireModel.from_wire`
checks every known field with no coercion (``"1"`` is not an integer, ``true`` is not a number) and refuses with an
:class:`Invalid` that names the path at fault (``layers.0.digest``). Unknown keys are ignored. Importing this costs
about a millisecond, where pydantic and a handful of models cost ~60 ms and ~12 MiB in every process.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

Path = tuple[str | int, ...]
Check = Callable[[Any, Path], Any]
_M = TypeVar("_M", bound="WireModel")


class Invalid(ValueError):
    """A value that does not fit its field; ``path`` is where it is in the document."""

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message

    def where(self) -> str:
        """The path as dotted text (``layers.0.digest``), or ``(top level)``."""
        return ".".join(str(part) for part in self.path) or "(top level)"


@dataclass(frozen=True, slots=True)
class WireField:
    """One field: the attribute ``name``, its JSON ``key``, the ``check`` of its value, whether it must be present."""

    name: str
    key: str
    check: Check
    required: bool = False


def wire(name: str, check: Check, key: str | None = None, *, required: bool = False) -> WireField:
    """A :class:`WireField` whose key is ``name`` unless given."""
    return WireField(name, key or name, check, required)


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def string(value: Any, path: Path) -> str:
    """A JSON string."""
    if not isinstance(value, str):
        raise Invalid(path, f"must be a string, not {_kind(value)}")
    return value


def nonempty_string(value: Any, path: Path) -> str:
    """A JSON string of at least one character."""
    if not string(value, path):
        raise Invalid(path, "must not be empty")
    return value  # type: ignore[no-any-return]


def integer(value: Any, path: Path) -> int:
    """A JSON integer (``true`` and ``1.0`` are not)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise Invalid(path, f"must be an integer, not {_kind(value)}")
    return value


def natural(value: Any, path: Path) -> int:
    """A JSON integer >= 0."""
    if integer(value, path) < 0:
        raise Invalid(path, f"must be >= 0, not {value}")
    return value  # type: ignore[no-any-return]


def boolean(value: Any, path: Path) -> bool:
    """``true`` or ``false``."""
    if not isinstance(value, bool):
        raise Invalid(path, f"must be true or false, not {_kind(value)}")
    return value


def json_object(value: Any, path: Path) -> dict[str, Any]:
    """Any JSON object, its contents unchecked."""
    if not isinstance(value, dict):
        raise Invalid(path, f"must be an object, not {_kind(value)}")
    return value


def list_of(check: Check) -> Check:
    """A JSON array whose every item passes ``check``."""

    def checked(value: Any, path: Path) -> list[Any]:
        if not isinstance(value, list):
            raise Invalid(path, f"must be an array, not {_kind(value)}")
        return [check(item, (*path, index)) for index, item in enumerate(value)]

    return checked


def dict_of(check: Check) -> Check:
    """A JSON object whose every value passes ``check``."""

    def checked(value: Any, path: Path) -> dict[str, Any]:
        return {key: check(item, (*path, key)) for key, item in json_object(value, path).items()}

    return checked


def model(cls: type[WireModel]) -> Check:
    """A nested object read as ``cls``."""
    return cls.from_wire


class WireModel:
    """The base of a frozen, slotted dataclass with a ``FIELDS`` table in the order of its attributes."""

    __slots__ = ()
    FIELDS: ClassVar[tuple[WireField, ...]]

    @classmethod
    def from_wire(cls: type[_M], data: Any, path: Path = ()) -> _M:
        """Read decoded JSON ``data`` strictly; :class:`Invalid` names the path at fault."""
        document = json_object(data, path)
        values: dict[str, Any] = {}
        for field in cls.FIELDS:
            value = document.get(field.key)
            if value is None:
                if field.required:
                    raise Invalid((*path, field.key), "missing" if field.key not in document else "must not be null")
                continue
            values[field.name] = field.check(value, (*path, field.key))
        made = cls(**values)
        made.check(path)
        return made

    def check(self, path: Path) -> None:
        """Checks across fields, after each field's own; raise :class:`Invalid` (nothing by default)."""

    def to_json_dict(self) -> dict[str, Any]:
        """The wire form: JSON keys, fields that are None left out, nested models and containers copied."""
        out: dict[str, Any] = {}
        for field in self.FIELDS:
            value = getattr(self, field.name)
            if value is not None:
                out[field.key] = _dumped(value)
        return out


def _dumped(value: Any) -> Any:
    if isinstance(value, WireModel):
        return value.to_json_dict()
    if isinstance(value, list):
        return [_dumped(item) for item in value]
    if isinstance(value, dict):
        return {key: _dumped(item) for key, item in value.items()}
    return value
