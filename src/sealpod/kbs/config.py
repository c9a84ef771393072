"""``kbs.toml``: the KBS's configuration (every key documented in deploy/kbs.toml)."""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sealpod.config import state_dir
from sealpod.errors import UsageError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HttpConfig(_Section):
    listen: str = "127.0.0.1:8080"
    certificate: Path | None = None
    private_key: Path | None = None
    insecure_http: bool = False
    max_body_bytes: int = 2 * 1024 * 1024


class AdminConfig(_Section):
    insecure: bool = False
    public_keys: list[Path] = Field(default_factory=list)
    roles: dict[str, list[str]] = Field(default_factory=lambda: {"admin": [".*"]})


class AttestationConfig(_Section):
    allow_sim: bool = False
    sim_dir: Path | None = None
    allow_sample: bool = False
    allow_debug: bool = False
    acceptable_tcb_statuses: list[str] = Field(default_factory=lambda: ["UpToDate", "SWHardeningNeeded"])
    pccs_url: str | None = None
    collateral_dir: Path | None = None
    token_lifetime: int = 300
    session_lifetime: int = 300
    signing_key: Path | None = None


class KbsConfig(_Section):
    http: HttpConfig = Field(default_factory=HttpConfig)
    storage: str = ""
    admin: AdminConfig = Field(default_factory=AdminConfig)
    attestation: AttestationConfig = Field(default_factory=AttestationConfig)

    def storage_url(self) -> str:
        """The store (default: ``sqlite://<state>/kbs/kbs.sqlite``)."""
        return self.storage or f"sqlite://{state_dir() / 'kbs' / 'kbs.sqlite'}"

    def signing_key_path(self) -> Path:
        """Where the attestation service's token key lives (made on first start)."""
        return self.attestation.signing_key or state_dir() / "kbs" / "token-key.pem"


def load_config(path: Path | None) -> KbsConfig:
    """Read ``kbs.toml`` (defaults when no file is given); errors name the key at fault."""
    if path is None:
        return KbsConfig()
    try:
        data = tomllib.loads(path.read_text())
    except OSError as err:
        raise UsageError(f"cannot read {path}: {err.strerror}") from None
    except tomllib.TOMLDecodeError as err:
        raise UsageError(f"{path} is not valid TOML: {err}") from None
    try:
        return KbsConfig.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise UsageError(f"{path}: {where}: {first['msg']}") from None
