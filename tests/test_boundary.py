"""The host/enclave contract: a volume the host asks for is parsed and refused by what is wrong, and the OCI
bundle's bind mounts become the enclave's volumes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sealpod.boundary.request import BootRequest
from sealpod.boundary.volumes import VolumeSpec
from sealpod.errors import SealpodError
from sealpod.runtime.oci_bundle import Bundle


def test_a_volume_is_source_destination_and_mode() -> None:
    assert VolumeSpec.parse("/h/s:/etc/app:ro") == VolumeSpec("/h/s", "/etc/app", True)
    assert VolumeSpec.parse("/h/s:/data/") == VolumeSpec("/h/s", "/data", False)
    assert str(VolumeSpec.parse("/h:/d")) == "/h:/d:rw"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("/only", "is not SOURCE:DESTINATION"),
        ("/a:/b:ro:x", "is not SOURCE:DESTINATION"),
        ("/a:/b:rx", "the mode is 'rx'"),
        ("rel:/b", "the source must be an absolute path"),
        ("/a:b", "the destination must be an absolute path"),
        ("/a:/", "below / without '..'"),
        ("/a:/x/../../etc", "below / without '..'"),
        ("/a:/proc/sys", "/proc/sys is the enclave's own"),
        ("/a:/dev", "/dev is the enclave's own"),
    ],
)
def test_malformed_volumes_are_refused_naming_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(SealpodError, match=message.replace("(", r"\(")):
        VolumeSpec.parse(text)


def test_a_boot_request_with_a_bad_volume_is_refused() -> None:
    request = BootRequest(image="i", kbs_url="http://k", volumes=["/a:/dev/x"])
    with pytest.raises(SealpodError, match="is the enclave's own"):
        BootRequest.from_json(request.to_json())


def test_the_bundle_s_bind_mounts_become_volumes_and_the_enclave_s_own_are_left_out(tmp_path: Path) -> None:
    mounts = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev/shm", "type": "bind", "source": "/run/shm", "options": ["rbind", "ro"]},
        {"destination": "/etc/hosts", "type": "bind", "source": "/s/hosts", "options": ["rbind", "rprivate", "rw"]},
        {"destination": "/etc/tenant", "type": "bind", "source": "/k/secret", "options": ["rbind", "ro"]},
        {"destination": "/tmp/x", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid"]},
    ]
    (tmp_path / "config.json").write_text(json.dumps({"mounts": mounts}))
    assert Bundle.load(tmp_path).volumes() == ["/s/hosts:/etc/hosts:rw", "/k/secret:/etc/tenant:ro"]
    (tmp_path / "config.json").write_text(
        json.dumps({"mounts": [{"destination": "/a:b", "source": "/s", "options": ["bind"]}]})
    )
    with pytest.raises(SealpodError, match="cannot be passed to the enclave"):
        Bundle.load(tmp_path).volumes()
