"""Writing OCI layouts: blobs land only when they match what they claim to be."""

from __future__ import annotations

from pathlib import Path

import pytest

from sealpod.errors import DigestMismatchError, LayoutError
from sealpod.oci.digest import digest_bytes
from sealpod.oci.layout import OciLayout


def test_put_blob_refuses_content_that_does_not_match(tmp_path: Path) -> None:
    layout = OciLayout(tmp_path / "l")
    with pytest.raises(DigestMismatchError, match="mismatch"):
        layout.put_blob([b"abc"], digest_bytes(b"abd"), 3)
    with pytest.raises(DigestMismatchError, match="4 bytes, expected 3"):
        layout.put_blob([b"abcd"], digest_bytes(b"abcd"), 3)
    assert list((tmp_path / "l/blobs/sha256").iterdir()) == []
    good = layout.put_blob([b"ab", b"c"], digest_bytes(b"abc"), 3)
    assert layout.blob_path(good.digest).read_bytes() == b"abc"


def test_reading_a_directory_that_is_not_a_layout(tmp_path: Path) -> None:
    with pytest.raises(LayoutError, match="not an OCI image layout"):
        OciLayout(tmp_path).read_index()
    (tmp_path / "oci-layout").write_text('{"imageLayoutVersion": "9.9"}')
    with pytest.raises(LayoutError, match="unsupported imageLayoutVersion"):
        OciLayout(tmp_path).read_index()
