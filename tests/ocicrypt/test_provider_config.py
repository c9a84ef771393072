"""Key providers come from a keyprovider config file, given explicitly or by $OCICRYPT_KEYPROVIDER_CONFIG; the file
is read once, when the recipient or key is added, and a provider it lacks is refused naming the file."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from sealpod.errors import UsageError
from sealpod.ocicrypt.layers import DecryptionKeys, Recipients
from sealpod.ocicrypt.options import PrivateOptions

SEALPOD = str(Path(sys.executable).with_name("sealpod"))


def _config(tmp_path: Path) -> Path:
    command = {"path": SEALPOD, "args": ["keyprovider", "--keys", str(tmp_path / "keks.json")]}
    path = tmp_path / "ocicrypt.json"
    path.write_text(json.dumps({"key-providers": {"attestation-agent": {"cmd": command}}}))
    return path


def test_an_explicit_config_wraps_without_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OCICRYPT_KEYPROVIDER_CONFIG", raising=False)
    config = _config(tmp_path)
    recipients = Recipients(provider_config=str(config))
    recipients.add("provider:attestation-agent:keyid=kbs:///default/image-kek/t")
    private = PrivateOptions(os.urandom(32), "sha256:" + "0" * 64, os.urandom(16))
    annotations = recipients.wrap(private)
    config.unlink()  # read once, at add(): wrapping again needs no file
    assert recipients.wrap(private).keys() == annotations.keys()
    assert "org.opencontainers.image.enc.keys.provider.attestation-agent" in annotations
    assert json.loads((tmp_path / "keks.json").read_text()).keys() == {"default/image-kek/t"}


def test_a_provider_the_config_lacks_is_refused_naming_the_file(tmp_path: Path) -> None:
    config = _config(tmp_path)
    with pytest.raises(UsageError, match=f"key provider 'other' is not configured in {config}"):
        Recipients(provider_config=str(config)).add("provider:other")
    with pytest.raises(UsageError, match=f"key provider 'other' is not configured in {config}"):
        DecryptionKeys(provider_config=str(config)).add("provider:other")
