"""``sealpod demo``: the whole flow on one machine, narrated. (For now: build, push, pull and unpack.)"""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sealpod.cli.common import err_console, out_console, run

if TYPE_CHECKING:
    from sealpod.oci.build import LayerSpec
    from sealpod.oci.localregistry import LocalRegistry
    from sealpod.oci.source import ImageStore

DEMO_PLATFORM = "linux/amd64"


def _step(text: str) -> None:
    out_console.print(f"\n[bold cyan]==>[/] {text}")


def _sample_layers(app_dir: Path) -> list[LayerSpec]:
    from sealpod.oci.build import LayerSpec

    note = tarfile.TarInfo("app/OLD-NOTE.txt")
    note_body = b"this file is deleted by the next layer\n"
    note.size = len(note_body)
    whiteout = tarfile.TarInfo("app/.wh.OLD-NOTE.txt")
    return [
        LayerSpec(members=[(note, note_body)]),
        LayerSpec(source=app_dir),
        LayerSpec(members=[(whiteout, b"")]),
    ]


def _show_tree(root: Path) -> None:
    for path in sorted(root.rglob("*")):
        kind = "d" if path.is_dir() else "l" if path.is_symlink() else "-"
        size = path.lstat().st_size if kind == "-" else ""
        out_console.print(f"    {kind} {path.relative_to(root)!s:40} {size}")


def demo(
    workdir: Annotated[
        Path | None, typer.Option(help="Keep the demo's files here instead of a temporary directory.")
    ] = None,
) -> None:
    """Run the sealpod flow end to end on this machine with embedded defaults, narrating each step."""

    def action() -> None:
        from sealpod.oci import localregistry
        from sealpod.oci.build import build_image
        from sealpod.oci.copy import copy_image
        from sealpod.oci.platform import parse_platform
        from sealpod.oci.pull import pull
        from sealpod.oci.reference import parse_reference
        from sealpod.oci.source import LayoutStore, RegistryOptions, RegistryStore

        base = workdir or Path(tempfile.mkdtemp(prefix="sealpod-demo-"))
        base.mkdir(parents=True, exist_ok=True)
        registry: LocalRegistry | None = None
        try:
            sample = resources.files("sealpod.deploy") / "sample-app"
            app_dir = base / "sample-app" / "app"
            shutil.rmtree(app_dir.parent, ignore_errors=True)
            app_dir.mkdir(parents=True)
            for item in sample.iterdir():
                (app_dir / item.name).write_bytes(item.read_bytes())
                (app_dir / item.name).chmod(0o755 if item.name.endswith(".sh") else 0o644)
            _step("Building the sample application image (3 layers, the last one whites out a file)")
            layout_dir = base / "layout"
            shutil.rmtree(layout_dir, ignore_errors=True)
            build_image(
                layout_dir,
                "hello",
                _sample_layers(app_dir.parent),
                config={"Entrypoint": ["/app/hello.sh"], "WorkingDir": "/app"},
            )
            source: ImageStore = LayoutStore(str(layout_dir), "hello")
            target: ImageStore = source
            if localregistry.available():
                _step("Starting a local docker-registry on 127.0.0.1 and pushing the image to it")
                registry = localregistry.LocalRegistry(base / "registry").start()
                reference = parse_reference(f"{registry.host}/demo/hello:v1")
                target = RegistryStore(reference, RegistryOptions(tls_verify=False))
                image = copy_image(source, target, parse_platform(DEMO_PLATFORM))
                out_console.print(f"    pushed docker://{reference} ({image.manifest_digest})")
            else:
                out_console.print("    (docker-registry is not installed: using the OCI layout directory)")
            _step(f"Pulling {target.describe()} and unpacking it (digests and diff_ids checked while streaming)")
            rootfs = base / "rootfs"
            shutil.rmtree(rootfs, ignore_errors=True)
            result = pull(target, rootfs, parse_platform(DEMO_PLATFORM))
            target.close()
            out_console.print(f"    {len(result.layers)} layers, manifest {result.image.manifest_digest}")
            _step(f"The unpacked root filesystem at {rootfs}")
            _show_tree(rootfs)
            _step("Done. Encryption, signatures, attestation and the enclave join this flow in later releases.")
        finally:
            if registry:
                registry.stop()
            if workdir is None:
                shutil.rmtree(base, ignore_errors=True)
            else:
                err_console.print(f"files kept in {base}")

    run(action)
