"""Hostile policy.json: every input is refused with one line in the error family naming what was wrong, never a
traceback, a hang or an unbounded read; and a seeded fuzz of the parser finds nothing outside the family."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from sealpod.errors import PolicyError
from sealpod.oci.build import LayerSpec, build_image
from sealpod.signature.policy import MAX_KEY_BYTES, load_policy, parse_policy

SEALPOD = str(Path(sys.executable).with_name("sealpod"))


def _key_policy(path: str) -> bytes:
    return json.dumps({"default": [{"type": "sigstoreSigned", "keyPath": path}]}).encode()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"default": [{"type": "reject"}], "x": ' + b"[" * 70 + b"]" * 70 + b"}", "nested more than 64 levels"),
        (b'{"default": [{"type": "reject"}], "n": ' + b"9" * 5000 + b"}", "a number of 5000 digits"),
        (b'{"default": [{"type": "reject"}], "default": []}', "the key 'default' appears twice"),
        (b'{"default": [{"type": "reject\\ud800"}]}', r"\$.default\[0\].type holds a lone UTF-16 surrogate"),
        (b'{"default": [{"type": "reject"}], "k": NaN}', "NaN is not a JSON value"),
        (_key_policy("/etc/ke\x00y.pub"), r"default\[0\].keyPath: the path .* holds a NUL byte"),
        (_key_policy("/dev/zero"), "/dev/zero is not a regular file"),
        (_key_policy("/nonexistent/key.pub"), "/nonexistent/key.pub does not exist"),
    ],
)
def test_hostile_documents_are_refused_naming_what_is_wrong(raw: bytes, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        parse_policy(raw)


def test_a_fifo_or_an_oversized_key_file_is_refused_without_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "key.fifo"
    os.mkfifo(fifo)
    errors: list[BaseException] = []
    reader = threading.Thread(target=lambda: _capture(errors, _key_policy(str(fifo))), daemon=True)
    reader.start()
    reader.join(5)
    assert not reader.is_alive(), "reading a FIFO keyPath hung"
    assert isinstance(errors[0], PolicyError)
    assert "key.fifo is not a regular file" in str(errors[0])
    big = tmp_path / "big.pub"
    big.write_bytes(b"x" * (MAX_KEY_BYTES + 1))
    with pytest.raises(PolicyError, match=f"big.pub is {MAX_KEY_BYTES + 1} bytes, over the {MAX_KEY_BYTES}-byte bound"):
        parse_policy(_key_policy(str(big)))
    # the policy file itself: a FIFO or a device in place of policy.json is refused, not read
    with pytest.raises(PolicyError, match="is not a regular file"):
        load_policy(Path("/dev/zero"))


def _capture(errors: list[BaseException], raw: bytes) -> None:
    try:
        parse_policy(raw)
    except BaseException as err:  # the test looks at what it was
        errors.append(err)


SEED_POLICIES = [
    {"default": [{"type": "reject"}], "transports": {"docker": {"quay.io/a/b": [{"type": "insecureAcceptAnything"}]}}},
    {
        "default": [{"type": "insecureAcceptAnything"}],
        "transports": {
            "docker": {
                "example.com": [
                    {
                        "type": "sigstoreSigned",
                        "keyData": "AAAA",
                        "signedIdentity": {"type": "remapIdentity", "prefix": "a", "signedPrefix": "b"},
                    }
                ]
            },
            "oci": {"/x": [{"type": "signedBy", "keyType": "GPGKeys", "keyData": "AAAA"}]},
        },
    },
]
TOKENS = [
    b"{",
    b"}",
    b"[",
    b"]",
    b'"',
    b":",
    b",",
    b"\\u0000",
    b"\\ud800",
    b"\x00",
    b"\xff",
    b"1e999",
    b"-0",
    b"9" * 400,
    b"null",
    b"true",
    b'"keyPath"',
    b'"/dev/zero"',
    b'"type"',
    b'"default"',
    b"[" * 200,
]


def _mutate(rng: random.Random, raw: bytes) -> bytes:
    data = bytearray(raw)
    for _ in range(rng.randint(1, 4)):
        choice = rng.random()
        where = rng.randrange(len(data) + 1)
        if choice < 0.4:
            data[where:where] = rng.choice(TOKENS)
        elif choice < 0.7 and data:
            del data[where : where + rng.randint(1, 8)]
        elif data:
            data[min(where, len(data) - 1)] = rng.randrange(256)
    return bytes(data)


def test_a_seeded_fuzz_of_the_parser_raises_nothing_outside_the_error_family() -> None:
    rng = random.Random(20261206)
    seeds = [json.dumps(p).encode() for p in SEED_POLICIES]
    accepted = 0
    refusals: list[str] = []
    for _ in range(4000):
        raw = _mutate(rng, rng.choice(seeds))
        try:
            parse_policy(raw)
            accepted += 1
        except PolicyError as err:  # anything else fails the test with its traceback
            refusals.append(str(err))
    assert [message for message in refusals if "\n" in message] == []
    not_json = sum("not valid JSON" in message for message in refusals)
    strict = sum("not strict JSON" in message for message in refusals)
    # the mutations reach every layer: malformed JSON, strictness, and the policy's own checks
    assert not_json > 500, not_json
    assert strict > 20, strict
    assert len(refusals) - not_json - strict > 200, len(refusals) - not_json - strict


def test_the_cli_refuses_a_hostile_policy_in_one_line(tmp_path: Path) -> None:
    build_image(tmp_path / "layout", "t", [LayerSpec(members=[])])
    for name, raw in (
        ("deep", b"[" * 100_000),
        ("digits", b'{"default": [{"type": "reject"}], "n": ' + b"9" * 5000 + b"}"),
        ("nul", _key_policy("/etc/ke\x00y")),
        ("surrogate", b'{"default": [{"type": "reject\\udfff"}]}'),
    ):
        policy = tmp_path / f"{name}.json"
        policy.write_bytes(raw)
        proc = subprocess.run(
            [
                SEALPOD,
                "pull",
                f"oci:{tmp_path / 'layout'}:t",
                "--rootfs",
                str(tmp_path / name),
                "--policy",
                str(policy),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode != 0, name
        assert "Traceback" not in proc.stderr, (name, proc.stderr)
        assert "error:" in proc.stderr, (name, proc.stderr)
        assert not (tmp_path / name).exists() or not any((tmp_path / name).iterdir()), name
