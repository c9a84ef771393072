"""``sealpod kbs ...``: run the key broker service and administer it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from sealpod.cli.common import err_console, escape, out_console, run
from sealpod.errors import UsageError

app = typer.Typer(help="The key broker service (trustee's KBS protocol) and its admin client.", no_args_is_help=True)
resource_app = typer.Typer(help="Resources (secrets, keys, policies the enclave fetches).", no_args_is_help=True)
policy_app = typer.Typer(help="Attestation and resource policies (Rego).", no_args_is_help=True)
reference_app = typer.Typer(help="Reference values (what a genuine enclave measures).", no_args_is_help=True)
app.add_typer(resource_app, name="resource")
app.add_typer(policy_app, name="policy")
app.add_typer(reference_app, name="reference")

Url = Annotated[
    str, typer.Option("--url", envvar="SEALPOD_KBS_URL", help="The KBS address, e.g. http://127.0.0.1:8080")
]
TokenKey = Annotated[
    Path | None, typer.Option("--token-key", envvar="SEALPOD_KBS_ADMIN_KEY", help="Ed25519 admin private key (PEM)")
]


def _admin(url: str, token_key: Path | None):  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from sealpod.kbs.client.admin import AdminClient
    from sealpod.kbs.service.admin_auth import mint_token

    token = None
    if token_key is not None:
        key = serialization.load_pem_private_key(token_key.read_bytes(), None)
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise UsageError(f"{token_key} is not an Ed25519 private key")
        token = mint_token(key)
    return AdminClient(url, token)


@app.command()
def serve(
    config: Annotated[Path | None, typer.Option("--config", help="kbs.toml (see deploy/kbs.toml)")] = None,
    listen: Annotated[str | None, typer.Option(help="HOST:PORT [default: http.listen of the config]")] = None,
    workers: Annotated[
        int, typer.Option(help="Worker processes, on one socket, their kept-alive connections kept level.")
    ] = 1,
) -> None:
    """Serve the KBS HTTP API (HTTPS with http.certificate/private_key; plain HTTP only with http.insecure_http)."""

    def action() -> None:
        from sealpod.kbs.config import load_config
        from sealpod.kbs.serving.app import CONFIG_ENV, build_app
        from sealpod.kbs.serving.workers import serve_workers

        settings = load_config(config)
        host, _, port = (listen or settings.http.listen).rpartition(":")
        tls = settings.http.certificate is not None and settings.http.private_key is not None
        if not tls and not settings.http.insecure_http:
            raise UsageError(
                "no TLS certificate configured",
                hint="set http.certificate and http.private_key, or http.insecure_http = true for a loopback test",
            )
        if settings.admin.insecure:
            err_console.print("[yellow]warning:[/] INSECURE admin mode: anyone can change resources and policies")
        if settings.attestation.allow_sim:
            err_console.print("[yellow]note:[/] the simulated SGX root is trusted: sim proves the flow, not hardware")
        build_app(settings).kbs.storage.close()  # fail fast on a bad configuration, before starting workers
        if config is not None:
            os.environ[CONFIG_ENV] = str(config.absolute())
        serve_workers(
            host,
            int(port),
            workers,
            str(settings.http.certificate) if tls else None,
            str(settings.http.private_key) if tls else None,
        )

    run(action)


@app.command("admin-keygen")
def admin_keygen(
    output_prefix: Annotated[str, typer.Option(help="Writes PREFIX.key and PREFIX.pub")] = "kbs-admin",
) -> None:
    """Make an Ed25519 admin key pair (put PREFIX.pub in admin.public_keys of kbs.toml)."""

    def action() -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519

        key = ed25519.Ed25519PrivateKey.generate()
        fd = os.open(f"{output_prefix}.key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(
                key.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                )
            )
        Path(f"{output_prefix}.pub").write_bytes(
            key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
        err_console.print(f"wrote {output_prefix}.key and {output_prefix}.pub")

    run(action)


@app.command()
def token(
    key: Annotated[Path, typer.Option("--key", help="Ed25519 admin private key (PEM).")],
    role: Annotated[str, typer.Option(help="The role claim.")] = "admin",
    lifetime: Annotated[int, typer.Option(help="Seconds the token is valid.")] = 3600,
) -> None:
    """Mint an admin token (trustee's EdDSA JWT) and print it."""

    def action() -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519

        from sealpod.kbs.service.admin_auth import mint_token

        private = serialization.load_pem_private_key(key.read_bytes(), None)
        if not isinstance(private, ed25519.Ed25519PrivateKey):
            raise UsageError(f"{key} is not an Ed25519 private key")
        out_console.print(mint_token(private, role=role, lifetime=lifetime))

    run(action)


@app.command("seal")
def seal_secret(
    resource: Annotated[str, typer.Argument(help="The KBS resource the secret is, kbs:///repository/type/tag.")],
    key: Annotated[Path, typer.Option("--key", help="The ES256 (P-256) signing key, PEM; made when missing.")],
    kid: Annotated[
        str,
        typer.Option("--kid", help="Where the KBS holds the key's public half (kbs:///...); put it there yourself."),
    ],
    public_out: Annotated[
        Path | None, typer.Option("--public-out", help="Write the public key (PEM) here, to put at --kid.")
    ] = None,
) -> None:
    """Print a sealed secret (CoCo's ``sealed.<JWS>``, a vault secret) naming RESOURCE: put it in a pod's env or a
    Secret; the enclave unseals it through the KBS after attestation, and only the sealed form is ever on the host."""

    def action() -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        from sealpod._internal.keyfiles import load_or_create_key
        from sealpod.kbs.client.sealed import seal

        private = load_or_create_key(key, lambda: ec.generate_private_key(ec.SECP256R1()))
        if not isinstance(private, ec.EllipticCurvePrivateKey) or private.curve.name != "secp256r1":
            raise UsageError(f"{key} is not a P-256 private key")
        if public_out is not None:
            public_out.write_bytes(
                private.public_key().public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                )
            )
        out_console.print(seal(resource, private, kid), soft_wrap=True)

    run(action)


@resource_app.command("put")
def resource_put(
    path: Annotated[str, typer.Argument(help="repository/type/tag")],
    file: Annotated[Path, typer.Argument(help="The resource's bytes.")],
    url: Url,
    token_key: TokenKey = None,
) -> None:
    """Store a resource."""
    run(lambda: _admin(url, token_key).put_resource(path, file.read_bytes()))


@resource_app.command("get")
def resource_get(
    path: Annotated[str, typer.Argument(help="repository/type/tag")], url: Url, token_key: TokenKey = None
) -> None:
    """Print a resource (admin view)."""
    run(lambda: typer.echo(_admin(url, token_key).get_resource(path), nl=False))


@resource_app.command("delete")
def resource_delete(
    path: Annotated[str, typer.Argument(help="repository/type/tag")], url: Url, token_key: TokenKey = None
) -> None:
    """Delete a resource."""
    run(lambda: _admin(url, token_key).delete_resource(path))


Kind = Annotated[str, typer.Option("--kind", help="attestation or resource")]


@policy_app.command("set")
def policy_set(
    file: Annotated[Path, typer.Argument(help="The Rego policy.")],
    url: Url,
    kind: Kind = "resource",
    token_key: TokenKey = None,
) -> None:
    """Set the attestation or resource policy."""

    def action() -> None:
        client = _admin(url, token_key)
        if kind == "attestation":
            client.set_attestation_policy(file.read_text())
        elif kind == "resource":
            client.set_resource_policy(file.read_text())
        else:
            raise UsageError("--kind is attestation or resource")

    run(action)


@policy_app.command("get")
def policy_get(url: Url, kind: Kind = "resource", token_key: TokenKey = None) -> None:
    """Print the attestation or resource policy."""

    def action() -> None:
        client = _admin(url, token_key)
        text = client.get_attestation_policy() if kind == "attestation" else client.get_resource_policy()
        typer.echo(text)

    run(action)


@reference_app.command("set")
def reference_set(
    name: Annotated[str, typer.Argument(help="e.g. mr_enclave")],
    values: Annotated[list[str], typer.Argument(help="Values; decimals (7, not 007) are numbers, the rest strings.")],
    url: Url,
    token_key: TokenKey = None,
) -> None:
    """Set the reference values of NAME."""
    parsed = [int(v) if v.isdigit() and str(int(v)) == v else v for v in values]  # "0000..." stays a string
    run(lambda: _admin(url, token_key).set_reference({name: parsed}))


@reference_app.command("get")
def reference_get(name: Annotated[str, typer.Argument()], url: Url, token_key: TokenKey = None) -> None:
    """Print the reference values of NAME."""
    run(lambda: out_console.print(escape(json.dumps(_admin(url, token_key).get_reference(name)))))
