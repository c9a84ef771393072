"""The /auth challenge: a nonce that names its session's TEE and expiry under the store's key, refused for any other
session, key or alteration."""

from __future__ import annotations

import base64
import os
import struct
import uuid

import pytest

from sealpod.kbs.service.challenges import NONCE_BYTES, TEES, ChallengeError, Challenges


def test_a_nonce_opens_only_for_its_session_under_its_key() -> None:
    challenges = Challenges(os.urandom(32))
    session = uuid.uuid4().hex
    nonce = challenges.issue(session, "sgx", 1_900_000_000)
    assert len(base64.b64decode(nonce)) == NONCE_BYTES == 32  # the size of trustee's random nonce
    opened = challenges.check(session, nonce)
    assert (opened.tee, opened.expires) == ("sgx", 1_900_000_000)
    assert challenges.check(session, challenges.issue(session, "sample", 5)).tee == "sample"
    assert challenges.issue(session, "sgx", 7) != challenges.issue(uuid.uuid4().hex, "sgx", 7)

    with pytest.raises(ChallengeError, match="not issued to this session"):
        challenges.check(uuid.uuid4().hex, nonce)  # another session's cookie
    with pytest.raises(ChallengeError, match="not issued to this session"):
        Challenges(os.urandom(32)).check(session, nonce)  # a KBS with another store
    raw = bytearray(base64.b64decode(nonce))
    for position in (1, 2, 5, 31):  # the TEE, the expiry, the MAC
        altered = bytearray(raw)
        altered[position] ^= 1
        with pytest.raises(ChallengeError, match="not issued to this session"):
            challenges.check(session, base64.b64encode(altered).decode())


@pytest.mark.parametrize(
    ("session", "nonce", "why"),
    [
        ("00" * 16, "AAAA", "wrong length"),
        ("00" * 16, "not base64!", "malformed"),
        ("zz" * 16, base64.b64encode(bytes(32)).decode(), "malformed"),
        ("00" * 8, base64.b64encode(bytes(32)).decode(), "wrong length"),
    ],
)
def test_malformed_nonces_and_session_ids_are_refused(session: str, nonce: str, why: str) -> None:
    with pytest.raises(ChallengeError, match=why):
        Challenges(os.urandom(32)).check(session, nonce)


def test_the_tee_list_is_append_only_and_keys_are_long() -> None:
    assert TEES[:2] == ("sgx", "sample"), "a TEE's index is in nonces in flight: never reorder"
    with pytest.raises(ValueError, match="32 bytes"):
        Challenges(b"short")


def test_a_nonce_of_an_unknown_format_or_tee_is_refused_even_under_the_right_key() -> None:
    key, session = os.urandom(32), uuid.uuid4().hex
    challenges = Challenges(key)
    for form, tee in ((2, 0), (1, len(TEES))):  # what a newer KBS sharing the store might write
        head = struct.pack(">BBI", form, tee, 1_900_000_000)
        nonce = base64.b64encode(head + challenges._mac(bytes.fromhex(session), head)).decode()
        with pytest.raises(ChallengeError, match=rf"format \({form}\) or TEE \({tee}\) is unknown"):
            challenges.check(session, nonce)
