"""`sealpod keyprovider` as ocicrypt runs it: one JSON request on stdin, one answer on stdout, errors on stderr."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

from sealpod.ocicrypt.keywrap.protocol import ProviderRequest, parse_response

SEALPOD = str(Path(sys.executable).with_name("sealpod"))
OPTS = b'{"symkey":"AAAA","digest":"sha256:00","cipheroptions":{"nonce":"AAAA"}}'


def _call(payload: bytes, keys: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [SEALPOD, "keyprovider", "--keys", str(keys)], input=payload, capture_output=True, check=False
    )


def test_command_protocol_round_trip(tmp_path: Path) -> None:
    keys = tmp_path / "keks.json"
    wrap = _call(
        ProviderRequest(
            "keywrap", {"attestation-agent": [b"keyid=kbs:///default/image-kek/cli"]}, optsdata=OPTS
        ).to_json(),
        keys,
    )
    assert wrap.returncode == 0, wrap.stderr
    answer = json.loads(wrap.stdout)
    assert list(answer) == ["keywrapresults"]
    annotation = parse_response(wrap.stdout, "keywrap")
    assert json.loads(annotation)["kid"] == "kbs:///default/image-kek/cli"
    assert "default/image-kek/cli" in json.loads(keys.read_text())
    # ocicrypt-rs sends byte fields as integer arrays
    request = json.dumps(
        {
            "op": "keyunwrap",
            "keywrapparams": {"ec": None, "optsdata": None},
            "keyunwrapparams": {"dc": {"Parameters": {}}, "annotation": list(annotation)},
        }
    ).encode()
    unwrap = _call(request, keys)
    assert unwrap.returncode == 0, unwrap.stderr
    assert base64.b64decode(json.loads(unwrap.stdout)["keyunwrapresults"]["optsdata"]) == OPTS


def test_bad_requests_fail_with_a_message(tmp_path: Path) -> None:
    for payload, message in ((b"{not json", b"not valid JSON"), (b'{"op":"keywrap"}', b"without optsdata")):
        proc = _call(payload, tmp_path / "keks.json")
        assert proc.returncode != 0
        assert proc.stdout == b""
        assert message in proc.stderr
