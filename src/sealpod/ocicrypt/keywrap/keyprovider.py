"""The ``provider.NAME`` key wrappers: external key providers from ``OCICRYPT_KEYPROVIDER_CONFIG``, reached over
their command (JSON on stdin/stdout) or gRPC protocol."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sealpod.errors import CryptoError, UsageError
from sealpod.ocicrypt.keywrap.protocol import GRPC_SERVICE, ProviderRequest, parse_response, pb_decode, pb_encode

CONFIG_ENV = "OCICRYPT_KEYPROVIDER_CONFIG"
TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """One configured provider: a command (path and args) or a gRPC address."""

    name: str
    command: list[str] | None = None
    grpc: str | None = None


def load_config(path: str | None = None) -> dict[str, ProviderConfig]:
    """The providers of the ocicrypt keyprovider config file (``$OCICRYPT_KEYPROVIDER_CONFIG``)."""
    path = path or os.environ.get(CONFIG_ENV)
    if not path:
        return {}
    try:
        data = json.loads(Path(path).read_bytes())
    except OSError as err:
        raise UsageError(f"cannot read keyprovider config {path}: {err.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UsageError(f"keyprovider config {path} is not valid JSON: {err}") from None
    providers = data.get("key-providers") if isinstance(data, dict) else None
    if not isinstance(providers, dict):
        raise UsageError(f"keyprovider config {path} has no 'key-providers' object")
    out: dict[str, ProviderConfig] = {}
    for name, entry in providers.items():
        if not isinstance(entry, dict):
            raise UsageError(f"keyprovider config {path}: key-providers.{name} must be an object")
        cmd, grpc = entry.get("cmd"), entry.get("grpc")
        if isinstance(cmd, dict) and isinstance(cmd.get("path"), str):
            args = cmd.get("args") or []
            if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
                raise UsageError(f"keyprovider config {path}: key-providers.{name}.cmd.args must be strings")
            out[name] = ProviderConfig(name, command=[cmd["path"], *args])
        elif isinstance(grpc, str) and grpc:
            out[name] = ProviderConfig(name, grpc=grpc)
        else:
            raise UsageError(
                f"keyprovider config {path}: key-providers.{name} needs cmd.path or grpc",
                hint='e.g. {"key-providers": {"NAME": {"cmd": {"path": "/usr/bin/sealpod", "args": ["keyprovider"]}}}}',
            )
    return out


def provider(name: str, path: str | None = None) -> ProviderConfig:
    """The provider ``name`` from the config, or an error that says how to configure it."""
    providers = load_config(path)
    if name not in providers:
        where = path or os.environ.get(CONFIG_ENV)
        raise UsageError(
            f"key provider {name!r} is not configured" + (f" in {where}" if where else ""),
            hint=f'set {CONFIG_ENV} to a file with {{"key-providers": {{"{name}": {{"cmd": ...}} or '
            f'{{"grpc": "HOST:PORT"}}}}}}',
        )
    return providers[name]


def call(config: ProviderConfig, request: ProviderRequest) -> bytes:
    """Send a request to a provider; the annotation (keywrap) or optsdata (keyunwrap) it answers."""
    payload = request.to_json()
    if config.command is not None:
        try:
            proc = subprocess.run(config.command, input=payload, capture_output=True, timeout=TIMEOUT, check=False)
        except OSError as err:
            raise CryptoError(f"key provider {config.name}: cannot run {config.command[0]}: {err.strerror}") from None
        except subprocess.TimeoutExpired:
            raise CryptoError(f"key provider {config.name} did not answer within {TIMEOUT:.0f} s") from None
        if proc.returncode != 0:
            detail = proc.stderr.decode(errors="replace").strip()[-500:]
            raise CryptoError(f"key provider {config.name} failed ({proc.returncode}): {detail}")
        return parse_response(proc.stdout, request.op)
    assert config.grpc is not None
    import grpc

    method = "WrapKey" if request.op == "keywrap" else "UnWrapKey"
    with grpc.insecure_channel(config.grpc) as channel:
        stub = channel.unary_unary(
            f"/{GRPC_SERVICE}/{method}", request_serializer=pb_encode, response_deserializer=pb_decode
        )
        try:
            answer = stub(payload, timeout=TIMEOUT)
        except grpc.RpcError as err:
            raise CryptoError(
                f"key provider {config.name} at {config.grpc}: {err.code().name}: {err.details()}"
            ) from None
    return parse_response(answer, request.op)
