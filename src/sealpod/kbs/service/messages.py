"""The KBS protocol 0.4.0 messages a KBS receives from a TEE, validated strictly (unknown fields refused) with
pydantic: the service's side only, so that the client in every enclave does not import pydantic."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sealpod._internal.jsonio import JsonRefusal, strict_loads
from sealpod.kbs.client.protocol import KbsError


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Request(_Message):
    """The TEE's first message."""

    version: str
    tee: str
    extra_params: Any = Field(default=None, alias="extra-params")


class RuntimeData(_Message):
    """What the evidence binds: the nonce and the TEE's public key."""

    nonce: str
    tee_pubkey: dict[str, Any] = Field(alias="tee-pubkey")


class TeeEvidence(_Message):
    """The TEE-specific evidence."""

    primary_evidence: Any
    additional_evidence: str = ""


class InitData(_Message):
    """Optional init-data (its digest is in the evidence's init-data field where the TEE has one)."""

    format: str
    body: str


class Attestation(_Message):
    """The TEE's evidence message."""

    init_data: InitData | None = Field(default=None, alias="init-data")
    runtime_data: RuntimeData = Field(alias="runtime-data")
    tee_evidence: TeeEvidence = Field(alias="tee-evidence")


def parse_message(model: type[_Message], raw: bytes, what: str) -> Any:
    """Validate a request body; refusals are trustee's ``InvalidRequest`` naming the field."""
    try:
        data = strict_loads(raw)
    except JsonRefusal as err:
        raise KbsError("InvalidRequest", f"malformed {what}: not strict JSON: {err}") from None
    except (UnicodeDecodeError, ValueError) as err:
        raise KbsError("InvalidRequest", f"malformed {what}: not JSON: {err}") from None
    try:
        return model.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(body)"
        raise KbsError("InvalidRequest", f"malformed {what}: {where}: {first['msg']}") from None
