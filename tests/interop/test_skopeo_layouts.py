"""OCI layouts and multi-platform images with skopeo and umoci on the other side."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sealpod.oci import mediatypes as mt
from sealpod.oci.copy import copy_image
from sealpod.oci.layout import OciLayout
from sealpod.oci.localregistry import LocalRegistry
from sealpod.oci.platform import parse_platform
from sealpod.oci.pull import pull
from sealpod.oci.reference import parse_reference
from sealpod.oci.source import LayoutStore, RegistryOptions, RegistryStore, resolve
from tests.conftest import need, run_tool, snapshot
from tests.helpers import E, image_from_tars, make_tar

pytestmark = pytest.mark.interop


def test_sealpod_writes_layouts_that_skopeo_and_umoci_read(registry: LocalRegistry, tmp_path: Path) -> None:
    skopeo, umoci = need("skopeo"), need("umoci")
    image_from_tars(
        tmp_path / "src",
        "v1",
        [make_tar([E("app", "dir"), E("app/a", data=b"A\n")]), make_tar([E("app/b", data=b"B\n")])],
    )
    ref = f"{registry.host}/layouts/app:v1"
    run_tool(skopeo, "copy", "--dest-tls-verify=false", f"oci:{tmp_path / 'src'}:v1", f"docker://{ref}")
    source = RegistryStore(parse_reference(ref), RegistryOptions(tls_verify=False))
    image = copy_image(source, LayoutStore(str(tmp_path / "ours"), "copied"), parse_platform("linux/amd64"))
    source.close()
    inspected = json.loads(run_tool(skopeo, "inspect", f"oci:{tmp_path / 'ours'}:copied").stdout)
    assert inspected["Digest"] == image.manifest_digest
    assert len(inspected["Layers"]) == 2
    run_tool(umoci, "unpack", "--image", f"{tmp_path / 'ours'}:copied", tmp_path / "bundle")
    pull(LayoutStore(str(tmp_path / "ours"), "copied"), tmp_path / "rootfs", parse_platform("linux/amd64"))
    assert snapshot(tmp_path / "rootfs") == snapshot(tmp_path / "bundle" / "rootfs")
    # and skopeo can push our layout back to a registry
    run_tool(
        skopeo,
        "copy",
        "--dest-tls-verify=false",
        f"oci:{tmp_path / 'ours'}:copied",
        f"docker://{registry.host}/layouts/again:v1",
    )


def test_multi_platform_index_through_the_registry(registry: LocalRegistry, tmp_path: Path) -> None:
    skopeo = need("skopeo")
    layout_dir = tmp_path / "multi"
    entries = []
    for arch in ("amd64", "arm64"):
        image_from_tars(layout_dir, arch, [make_tar([E("arch", data=arch.encode())])], config={"Cmd": ["/bin/sh"]})
        layout = OciLayout(layout_dir)
        desc = layout.find(arch)
        manifest = json.loads(layout.blob_path(desc.digest).read_bytes())
        config_blob = layout.blob_path(manifest["config"]["digest"])
        config = json.loads(config_blob.read_bytes())
        config["architecture"] = arch
        new_config = layout.put_bytes(json.dumps(config).encode(), mt.OCI_CONFIG)
        manifest["config"] = new_config.to_json_dict()
        new_manifest = layout.put_bytes(json.dumps(manifest).encode(), mt.OCI_MANIFEST)
        entry = new_manifest.to_json_dict()
        entry["platform"] = {"os": "linux", "architecture": arch}
        entries.append(entry)
    index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": entries}
    OciLayout(layout_dir).tag(OciLayout(layout_dir).put_bytes(json.dumps(index).encode(), mt.OCI_INDEX), "multi")
    ref = f"{registry.host}/multi/app:v1"
    run_tool(skopeo, "copy", "--all", "--dest-tls-verify=false", f"oci:{layout_dir}:multi", f"docker://{ref}")
    for arch in ("amd64", "arm64"):
        store = RegistryStore(parse_reference(ref), RegistryOptions(tls_verify=False))
        result = pull(store, tmp_path / f"rootfs-{arch}", parse_platform(f"linux/{arch}"))
        store.close()
        assert (tmp_path / f"rootfs-{arch}" / "arch").read_bytes() == arch.encode()
        assert result.image.index is not None
        assert result.image.config.architecture == arch
    store = RegistryStore(parse_reference(ref), RegistryOptions(tls_verify=False))
    with pytest.raises(Exception, match="no manifest for platform linux/s390x"):
        resolve(store, parse_platform("linux/s390x"))
    store.close()
