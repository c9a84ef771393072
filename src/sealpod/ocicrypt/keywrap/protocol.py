"""The ocicrypt keyprovider protocol: its JSON messages (as Go marshals them) and the one-field protobuf wrapper
that the gRPC variant sends them in.

Byte fields are written as padded standard base64 (Go's ``[]byte``) and read from either base64 or a JSON array of
integers (what Rust's serde writes for ``Vec<u8>``).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

from sealpod._internal.jsonio import load_object
from sealpod.errors import CryptoError

GRPC_SERVICE = "keyprovider.KeyProviderService"
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


def encode_bytes(data: bytes) -> str:
    """Go's JSON form of ``[]byte``."""
    return base64.b64encode(data).decode()


def decode_bytes(value: Any, what: str) -> bytes | None:
    """Base64 string, JSON integer array, or null."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise CryptoError(f"keyprovider message: {what} is not base64") from None
    if isinstance(value, list) and all(isinstance(b, int) and 0 <= b <= 255 for b in value):
        return bytes(value)
    raise CryptoError(f"keyprovider message: {what} must be base64 or an array of byte values")


def _parameters(value: Any, what: str) -> dict[str, list[bytes]]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CryptoError(f"keyprovider message: {what} must be an object")
    out: dict[str, list[bytes]] = {}
    for name, items in value.items():
        if not isinstance(items, list):
            raise CryptoError(f"keyprovider message: {what}[{name!r}] must be a list")
        out[name] = [decode_bytes(item, f"{what}[{name!r}]") or b"" for item in items]
    return out


@dataclass(slots=True)
class ProviderRequest:
    """A keywrap or keyunwrap request."""

    op: str
    parameters: dict[str, list[bytes]] = field(default_factory=dict)
    optsdata: bytes | None = None
    annotation: bytes | None = None

    def to_json(self) -> bytes:
        """As ocicrypt (Go) sends it."""
        params = {k: [encode_bytes(v) for v in vs] for k, vs in self.parameters.items()}
        if self.op == "keywrap":
            body: dict[str, Any] = {
                "op": "keywrap",
                "keywrapparams": {
                    "ec": {"Parameters": params, "DecryptConfig": {"Parameters": {}}},
                    "optsdata": encode_bytes(self.optsdata or b""),
                },
                "keyunwrapparams": {"dc": None, "annotation": None},
            }
        else:
            body = {
                "op": "keyunwrap",
                "keywrapparams": {"ec": None, "optsdata": None},
                "keyunwrapparams": {"dc": {"Parameters": params}, "annotation": encode_bytes(self.annotation or b"")},
            }
        return json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> ProviderRequest:
        """Parse a request from ocicrypt (Go) or ocicrypt-rs (Rust)."""
        data = _load(raw, "request")
        op = data.get("op")
        wrap = data.get("keywrapparams") or {}
        unwrap = data.get("keyunwrapparams") or {}
        if not isinstance(wrap, dict) or not isinstance(unwrap, dict):
            raise CryptoError("keyprovider request: keywrapparams/keyunwrapparams must be objects")
        if op == "keywrap":
            ec = wrap.get("ec") or {}
            if not isinstance(ec, dict):
                raise CryptoError("keyprovider request: keywrapparams.ec must be an object")
            optsdata = decode_bytes(wrap.get("optsdata"), "keywrapparams.optsdata")
            if not optsdata:
                raise CryptoError("keyprovider request: keywrap without optsdata")
            return cls("keywrap", _parameters(ec.get("Parameters"), "ec.Parameters"), optsdata=optsdata)
        if op == "keyunwrap":
            dc = unwrap.get("dc") or {}
            if not isinstance(dc, dict):
                raise CryptoError("keyprovider request: keyunwrapparams.dc must be an object")
            annotation = decode_bytes(unwrap.get("annotation"), "keyunwrapparams.annotation")
            if not annotation:
                raise CryptoError("keyprovider request: keyunwrap without an annotation")
            return cls("keyunwrap", _parameters(dc.get("Parameters"), "dc.Parameters"), annotation=annotation)
        raise CryptoError(f"keyprovider request: unknown op {op!r} (keywrap and keyunwrap are defined)")


def _load(raw: bytes, what: str) -> dict[str, Any]:
    return load_object(raw, f"keyprovider {what}", MAX_MESSAGE_BYTES, CryptoError)


def wrap_response(annotation: bytes) -> bytes:
    """The keywrap answer."""
    return json.dumps({"keywrapresults": {"annotation": encode_bytes(annotation)}}, separators=(",", ":")).encode()


def unwrap_response(optsdata: bytes) -> bytes:
    """The keyunwrap answer."""
    return json.dumps({"keyunwrapresults": {"optsdata": encode_bytes(optsdata)}}, separators=(",", ":")).encode()


def parse_response(raw: bytes, op: str) -> bytes:
    """The annotation (keywrap) or optsdata (keyunwrap) from a provider's answer."""
    data = _load(raw, "response")
    section, member = ("keywrapresults", "annotation") if op == "keywrap" else ("keyunwrapresults", "optsdata")
    results = data.get(section)
    if not isinstance(results, dict):
        raise CryptoError(f"keyprovider response has no {section!r} object")
    value = decode_bytes(results.get(member), f"{section}.{member}")
    if not value:
        raise CryptoError(f"keyprovider response has an empty {section}.{member}")
    return value


def pb_encode(payload: bytes) -> bytes:
    """The protobuf message ``{bytes field 1 = payload}``."""
    length = len(payload)
    varint = bytearray()
    while True:
        byte = length & 0x7F
        length >>= 7
        varint.append(byte | (0x80 if length else 0))
        if not length:
            break
    return b"\x0a" + bytes(varint) + payload


def pb_decode(message: bytes) -> bytes:
    """Field 1 of a one-field protobuf message (other fields are skipped)."""
    pos, found = 0, b""
    while pos < len(message):
        key, pos = _varint(message, pos)
        number, wire = key >> 3, key & 7
        if wire == 2:
            length, pos = _varint(message, pos)
            if pos + length > len(message):
                raise CryptoError("keyprovider gRPC message is truncated")
            if number == 1:
                found = message[pos : pos + length]
            pos += length
        elif wire == 0:
            _, pos = _varint(message, pos)
        else:
            raise CryptoError(f"keyprovider gRPC message has unexpected wire type {wire}")
    return found


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(data) or shift > 63:
            raise CryptoError("keyprovider gRPC message has a malformed varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos
