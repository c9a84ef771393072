"""Self-authenticating /auth challenges: the nonce a session is given carries its TEE and expiry and a MAC over them
and the session id, under a key every KBS process sharing the store holds. So /auth writes nothing to the store
(and a flood of /auth requests fills nothing), while /attest can still tell, on any process, that a nonce is the one
this KBS gave this session, for which TEE and until when. A session enters the store only when it is attested, by
an insert that a second attestation of the same session loses (see :meth:`Storage.record_attestations`).

Nonce layout (32 bytes, standard base64 like trustee's random nonce): format 1 (1 byte), the TEE's index in
:data:`TEES` (1), the expiry in Unix seconds (4, big-endian), then the first 26 bytes of
HMAC-SHA256(key, label || session id (16 bytes) || the 6 bytes before the MAC).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import struct
from dataclasses import dataclass

#: The TEEs this attestation service appraises, by their position in a nonce (never reorder; append only).
TEES = ("sgx", "sample")
_FORMAT = 1
_LABEL = b"sealpod-kbs-session-nonce\0"
_HEAD = struct.Struct(">BBI")
_MAC_BYTES = 26
NONCE_BYTES = _HEAD.size + _MAC_BYTES


class ChallengeError(ValueError):
    """The nonce is not the one this KBS gave this session."""


@dataclass(frozen=True, slots=True)
class Challenge:
    """What a valid nonce says about its session."""

    tee: str
    expires: int


class Challenges:
    """Issues and checks the nonces of sessions under one key (32 random bytes kept in the store)."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("the session nonce key must have at least 32 bytes")
        self._key = key

    def _mac(self, session_id: bytes, head: bytes) -> bytes:
        return hmac.digest(self._key, _LABEL + session_id + head, "sha256")[:_MAC_BYTES]

    def issue(self, session_id: str, tee: str, expires: int) -> str:
        """The nonce for a new session (``session_id``: 32 hex digits; ``tee`` one of :data:`TEES`)."""
        head = _HEAD.pack(_FORMAT, TEES.index(tee), expires)
        return base64.b64encode(head + self._mac(bytes.fromhex(session_id), head)).decode()

    def check(self, session_id: str, nonce: str) -> Challenge:
        """The TEE and expiry ``nonce`` was issued with for ``session_id``; :class:`ChallengeError` if this KBS did
        not issue that nonce to that session (the expiry is the caller's to check)."""
        try:
            raw = base64.b64decode(nonce, validate=True)
            sid = bytes.fromhex(session_id)
        except (binascii.Error, ValueError):
            raise ChallengeError("the nonce or the session id is malformed") from None
        if len(raw) != NONCE_BYTES or len(sid) != 16:
            raise ChallengeError("the nonce or the session id has the wrong length")
        head, mac = raw[: _HEAD.size], raw[_HEAD.size :]
        if not hmac.compare_digest(mac, self._mac(sid, head)):
            raise ChallengeError("the nonce was not issued to this session by this KBS")
        form, tee, expires = _HEAD.unpack(head)
        if form != _FORMAT or tee >= len(TEES):  # cannot happen under our own MAC, unless a newer KBS wrote it
            raise ChallengeError(f"the nonce's format ({form}) or TEE ({tee}) is unknown to this KBS")
        return Challenge(TEES[tee], expires)
