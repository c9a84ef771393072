"""``sealpod demo``: the whole deployment flow on one machine, narrated.

Tenant: build a sample image, make a KEK and a cosign key, encrypt and sign the image, push it, register the KEK,
the public key, the signature policy and the enclave's reference values with a KBS. Node: run the image in the
generic enclave (simulated SGX here), which attests, gets everything from the KBS, and runs the workload. Then an
unsigned image and an enclave the KBS does not know are refused.

The image store is a local docker-registry when one is installed, else (or with ``--registry layout``) an OCI layout
directory in the demo's workdir: the enclave reads ``oci:DIR:TAG`` from the host's disk, the signature lives in the
layout (:mod:`sealpod.signature.layout`), and the policy's scope is the layout directory.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from sealpod.cli.common import err_console, out_console, run

if TYPE_CHECKING:
    from sealpod.boundary.request import BootRequest
    from sealpod.kbs.serving.embedded import EmbeddedKbs
    from sealpod.oci.build import LayerSpec
    from sealpod.oci.localregistry import LocalRegistry

DEMO_PLATFORM = "linux/amd64"
KEK_ID = "kbs:///default/image-kek/demo"
COSIGN_KEY_PATH = "default/cosign-key/demo"
#: The workload's secrets in the KBS: one it asks for over the CDH API, one its image's Env names sealed.
API_TOKEN_PATH = "default/demo/api-token"  # noqa: S105 - a resource path, not a secret
DB_PASSWORD_PATH = "default/demo/db-password"  # noqa: S105 - a resource path, not a secret
SEALING_KEY_PATH = "default/demo/sealing-pub"
PASSPHRASE = b"sealpod-demo"
#: The docker reference a layout image's signature claims (a layout has none of its own); the policy requires it.
LAYOUT_IDENTITY = "localhost/sealpod-demo/hello:v1"
STORES = ("auto", "docker-registry", "layout")


def _step(text: str) -> None:
    out_console.print(f"\n[bold cyan]==>[/] {text}")


def _say(text: str) -> None:
    out_console.print(f"    {escape(text)}")


def _member(
    name: str, data: bytes = b"", *, kind: bytes = tarfile.REGTYPE, link: str = "", mode: int = 0o644, owner: int = 0
) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode, info.uid, info.gid = kind, link, mode, owner, owner
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data if kind == tarfile.REGTYPE else None


def _sample_layers(app_dir: Path) -> list[LayerSpec]:
    """A busybox base (from this host's busybox-static), the app, and a layer that whites out an old file."""
    from sealpod.errors import SealpodError
    from sealpod.oci.build import LayerSpec

    busybox = shutil.which("busybox")
    if busybox is None:
        raise SealpodError("busybox is not installed", hint="apt-get install busybox-static (./setup.sh does)")
    base = [
        _member("bin", kind=tarfile.DIRTYPE, mode=0o755),
        _member("bin/busybox", Path(busybox).resolve().read_bytes(), mode=0o755),
        _member("bin/sh", kind=tarfile.SYMTYPE, link="busybox"),
        _member("etc", kind=tarfile.DIRTYPE, mode=0o755),
        _member("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/app:/bin/sh\n"),
        _member("etc/group", b"root:x:0:\napp:x:1000:\n"),
        _member("app", kind=tarfile.DIRTYPE, mode=0o755, owner=1000),
        _member("app/OLD-NOTE.txt", b"this file is deleted by the last layer\n"),
    ]
    return [
        LayerSpec(members=base),
        LayerSpec(source=app_dir),
        LayerSpec(members=[_member("app/.wh.OLD-NOTE.txt")]),
    ]


def _copy_sample(base: Path) -> Path:
    sample = resources.files("sealpod.deploy") / "sample-app"
    app_dir = base / "sample-app" / "app"
    shutil.rmtree(app_dir.parent, ignore_errors=True)
    app_dir.mkdir(parents=True)
    for item in sample.iterdir():
        (app_dir / item.name).write_bytes(item.read_bytes())
        (app_dir / item.name).chmod(0o755 if item.name.endswith(".sh") else 0o644)
    return app_dir.parent


def _encrypt_and_push(base: Path, layout_dir: Path, destination: str) -> str:
    """Encrypt every layer with a fresh KEK (CoCo key-provider packet, kid = KEK_ID) while copying to ``destination``;
    returns the manifest digest."""
    from sealpod.oci.copy import copy_image
    from sealpod.oci.platform import parse_platform
    from sealpod.oci.source import RegistryOptions, open_store, parse_location
    from sealpod.ocicrypt.layers import LayerEncryption, Recipients

    provider_config = base / "ocicrypt.json"
    command = {"path": sys.executable, "args": ["-m", "sealpod", "keyprovider", "--keys", str(base / "keks.json")]}
    provider_config.write_text(json.dumps({"key-providers": {"attestation-agent": {"cmd": command}}}))
    recipients = Recipients(provider_config=str(provider_config))
    recipients.add(f"provider:attestation-agent:keyid={KEK_ID}")
    src = open_store(parse_location(f"oci:{layout_dir}:hello"), RegistryOptions())
    dst = open_store(parse_location(destination), RegistryOptions(tls_verify=False))
    try:
        image = copy_image(src, dst, parse_platform(DEMO_PLATFORM), rewriter=LayerEncryption(recipients))
    finally:
        src.close()
        dst.close()
    return image.manifest_digest


def _sign(image: str, digest: str, private_pem: bytes) -> None:
    """A sigstore signature: attached in the registry, or kept in the layout claiming :data:`LAYOUT_IDENTITY`."""
    from sealpod.oci.source import LayoutStore, RegistryOptions, open_store, parse_location
    from sealpod.signature import layout, sigstore
    from sealpod.signature.payload import COSIGN_TYPE, make_payload

    location = parse_location(image)
    store = open_store(location, RegistryOptions(tls_verify=False))
    try:
        key = sigstore.load_private_key(private_pem, PASSPHRASE)
        if isinstance(store, LayoutStore):
            payload = make_payload(COSIGN_TYPE, LAYOUT_IDENTITY, digest)
            layout.write_signature(store, digest, payload, sigstore.sign(key, payload))
        else:
            payload = make_payload(COSIGN_TYPE, str(location.reference), digest)
            sigstore.write_attachment(store, digest, payload, sigstore.sign(key, payload))
    finally:
        store.close()


def _policy_transports(image: str) -> dict[str, object]:
    """The signature policy's ``transports``: the registry host, or the layout directory, needs our key."""
    from sealpod.oci.source import parse_location

    location = parse_location(image)
    requirement: dict[str, object] = {"type": "sigstoreSigned", "keyPath": f"kbs:///{COSIGN_KEY_PATH}"}
    if location.transport == "oci":
        requirement["signedIdentity"] = {"type": "exactReference", "dockerReference": LAYOUT_IDENTITY}
        return {"oci": {str(location.path): [requirement]}}
    assert location.reference is not None
    return {"docker": {location.reference.registry_host: [requirement]}}


def _register(kbs: EmbeddedKbs, base: Path, image: str, public_pem: bytes, mr_enclave: str = "") -> None:
    from sealpod.enclave.measure import measure
    from sealpod.kbs.client.admin import AdminClient

    identity = measure()
    keks = json.loads((base / "keks.json").read_text())
    policy = {"default": [{"type": "reject"}], "transports": _policy_transports(image)}
    with AdminClient(kbs.url) as admin:
        admin.put_resource("default/image-kek/demo", base64.b64decode(keks["default/image-kek/demo"]))
        admin.put_resource(COSIGN_KEY_PATH, public_pem)
        admin.put_resource("default/security-policy/test", json.dumps(policy).encode())
        values = identity.reference_values()
        if mr_enclave:
            values["mr_enclave"] = [mr_enclave]  # another build of the enclave
        admin.set_reference(values)


@dataclass(frozen=True)
class _Secrets:
    """The demo workload's secrets: random values for the KBS, and a sealed reference for the image's Env."""

    api_token: bytes
    db_password: bytes
    sealed: str
    public_pem: bytes

    @classmethod
    def make(cls) -> _Secrets:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        from sealpod.kbs.client.sealed import seal

        key = ec.generate_private_key(ec.SECP256R1())
        public_pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        sealed = seal(f"kbs:///{DB_PASSWORD_PATH}", key, f"kbs:///{SEALING_KEY_PATH}")
        return cls(
            f"api-token-{os.urandom(6).hex()}".encode(), f"db-{os.urandom(6).hex()}".encode(), sealed, public_pem
        )

    def register(self, kbs: EmbeddedKbs) -> None:
        from sealpod.kbs.client.admin import AdminClient

        with AdminClient(kbs.url) as admin:
            admin.put_resource(API_TOKEN_PATH, self.api_token)
            admin.put_resource(DB_PASSWORD_PATH, self.db_password)
            admin.put_resource(SEALING_KEY_PATH, self.public_pem)


def _run_enclave(request: BootRequest) -> int:
    from sealpod.runtime.launch import run_enclave

    sys.stdout.flush()
    return run_enclave(request)


def _image_store(choice: str, base: Path) -> tuple[str, LocalRegistry | None]:
    """Where the encrypted image goes, narrated: ``(image reference, the registry started)``."""
    from sealpod.oci import localregistry

    if choice == "layout" or not localregistry.available():
        store = base / "images"
        shutil.rmtree(store, ignore_errors=True)
        why = "--registry layout" if choice == "layout" else "docker-registry is not installed"
        _step(f"Tenant: the image store is an OCI layout directory, {store} ({why})")
        _say("the enclave reads it from the host's disk as oci:DIR:TAG; the signature is kept in the layout itself")
        return f"oci:{store}:v1", None
    _step("Tenant: the image store is a local docker-registry on 127.0.0.1")
    server = localregistry.LocalRegistry(base / "registry").start()
    return f"{server.host}/demo/hello:v1", server


def _check_store(choice: str) -> None:
    from sealpod.errors import UsageError
    from sealpod.oci import localregistry

    if choice not in STORES:
        raise UsageError(f"--registry {choice!r} is not one of {', '.join(STORES)}")
    if choice == "docker-registry" and not localregistry.available():
        raise UsageError(
            "docker-registry is not installed", hint="apt-get install docker-registry, or use --registry layout"
        )


def _destination(image: str) -> str:
    return image if image.startswith("oci:") else f"docker://{image}"


def demo(
    workdir: Annotated[
        Path | None, typer.Option(help="Keep the demo's files here instead of a temporary directory.")
    ] = None,
    registry: Annotated[
        str,
        typer.Option(
            "--registry",
            metavar="auto|docker-registry|layout",
            help="Where the image is pushed: a local docker-registry, or an OCI layout directory in the workdir; "
            "auto: the registry when docker-registry is installed.",
        ),
    ] = "auto",
) -> None:
    """Run the whole deployment flow on this machine with embedded defaults, narrating each step.

    Builds, encrypts, signs and pushes a sample image (to a local docker-registry when installed, else to an OCI
    layout dir); starts a KBS and registers the image's key, the signature policy and the enclave's measurement; runs
    the image in the enclave (simulated SGX when there is none); then shows an unsigned image and an unregistered
    enclave being refused. Needs root (namespaces).
    """

    def action() -> None:
        from sealpod.boundary.request import BootRequest
        from sealpod.enclave.measure import measure
        from sealpod.errors import SealpodError
        from sealpod.kbs.serving.embedded import EmbeddedKbs
        from sealpod.oci.build import build_image
        from sealpod.signature.sigstore import generate_key_pair

        if os.geteuid() != 0:
            raise SealpodError(
                "the demo runs the enclave in its own namespaces and needs root", hint="sudo sealpod demo"
            )
        _check_store(registry)
        base = (workdir or Path(tempfile.mkdtemp(prefix="sealpod-demo-"))).absolute()
        base.mkdir(parents=True, exist_ok=True)
        server: LocalRegistry | None = None
        kbs: EmbeddedKbs | None = None
        try:
            _step("Tenant: making the workload's secrets (they go only to the KBS) and sealing a reference to one")
            secrets = _Secrets.make()
            _say(f"{DB_PASSWORD_PATH} and {API_TOKEN_PATH}; the image's Env gets DB_PASSWORD={secrets.sealed[:24]}...")

            _step("Tenant: building the sample application image (busybox base, the app, a whiteout layer)")
            layout_dir = base / "layout"
            shutil.rmtree(layout_dir, ignore_errors=True)
            build_image(
                layout_dir,
                "hello",
                _sample_layers(_copy_sample(base)),
                config={
                    "Entrypoint": ["/app/hello.sh"],
                    "WorkingDir": "/app",
                    "User": "app",
                    "Env": ["GREETING=hello from inside the enclave", f"DB_PASSWORD={secrets.sealed}"],
                },
            )
            _say(f"plain image in {layout_dir}")

            image, server = _image_store(registry, base)
            where = "the layout" if server is None else "the registry"

            _step(f"Tenant: encrypting every layer (AES-256-CTR + HMAC) with a new KEK ({KEK_ID}) and pushing")
            for name in ("keks.json", "keks.json.lock"):
                (base / name).unlink(missing_ok=True)
            digest = _encrypt_and_push(base, layout_dir, _destination(image))
            _say(f"pushed {_destination(image)}@{digest}: {where} holds only ciphertext layers")

            _step(f"Tenant: making a cosign key pair and signing the image (sigstore attachment in {where})")
            private_pem, public_pem = generate_key_pair(PASSPHRASE)
            _sign(image, digest, private_pem)
            _say(f"signed {digest}" + (f" as {LAYOUT_IDENTITY}" if server is None else ""))

            _step("Key broker: starting a KBS on 127.0.0.1 (SQLite store, simulated SGX root allowed)")
            kbs = EmbeddedKbs(base / "kbs", base / "state" / "sim-sgx")
            os.environ["SEALPOD_STATE_DIR"] = str(base / "state")
            kbs.start()
            identity = measure()
            _say(f"{kbs.url}; note: a simulated quote proves nothing about hardware, only real SGX does")
            _say(
                f"enclave measurement: MRENCLAVE {identity.mr_enclave.hex()[:16]}..., MRSIGNER "
                f"{identity.mr_signer.hex()[:16]}..."
            )

            _step("Tenant: registering the KEK, the cosign public key, the signature policy and the reference values")
            _register(kbs, base, image, public_pem)
            secrets.register(kbs)
            _say(f"signature policy: {json.dumps(_policy_transports(image))}, everything else rejected")

            request = BootRequest(image=image, kbs_url=kbs.url, allow_sim=True, registry_tls_verify=False, name="demo")
            _step("Node: `sealpod run` the image in the enclave (attest, fetch keys, verify, decrypt, unpack, run)")
            code = _run_enclave(request)
            if code != 0:
                raise SealpodError(f"the workload failed with exit status {code}")
            _say("the workload ran as the image's user, in its own namespaces, on a rootfs only the enclave sees;")
            _say("it printed two secrets only the KBS held: the host and the image had the sealed reference only")

            _step("Host view: the rootfs on the host's disk is gocryptfs ciphertext; its key is sealed to the enclave")
            volumes = sorted((base / "state" / "rootfs").glob("*/cipher"))
            if volumes:
                names = [p.name for p in volumes[0].iterdir() if not p.name.startswith("gocryptfs.")]
                _say(f"{volumes[0]}: {len(names)} top-level entries, e.g. {names[0] if names else '-'}")
                _say(f"sealed key: {volumes[0].parent / 'key.sealed'}")

            _step(
                "Node: run it again (warm start): the sealed rootfs reopens, signatures are re-checked, nothing pulled"
            )
            code = _run_enclave(request)
            if code != 0:
                raise SealpodError(f"the workload failed with exit status {code}")

            _step(f"Refused: an image nobody signed (pushed to {where} under another tag)")
            unsigned = image.removesuffix(":v1") + ":unsigned"
            _encrypt_and_push(base, layout_dir, _destination(unsigned))
            code = _run_enclave(request.replace(image=unsigned))
            _say(f"exit status {code}: nothing was pulled, decrypted or run")

            _step("Refused: an enclave whose measurement the KBS does not have (another build of the enclave)")
            _register(kbs, base, image, public_pem, "00" * 32)
            code = _run_enclave(request)
            _say(f"exit status {code}: the KBS released no policy and no key")

            _step(
                "Done: the node side (sealpod run) never held a key or a plaintext layer;"
                " the tenant's keys stayed with the tenant and the KBS."
            )
        finally:
            if kbs:
                kbs.stop()
            if server:
                server.stop()
            if workdir is None:
                shutil.rmtree(base, ignore_errors=True)
            else:
                err_console.print(f"files kept in {base}")

    run(action)
