"""KBS protocol 0.4.0: trustee's error bodies, resource paths and the report-data binding (RFC 8785 JCS +
SHA-384), shared by the client in the enclave and the service (whose message models are
:mod:`sealpod.kbs.service.messages`)."""

from __future__ import annotations

import hashlib
import json
import json.encoder
import re
from collections.abc import Callable
from typing import Any

from sealpod.errors import SealpodError

PROTOCOL_VERSION = "0.4.0"
ERROR_TYPE_PREFIX = "https://github.com/confidential-containers/kbs/errors/"
SESSION_COOKIE = "kbs-session-id"
#: The longest resource path component: trustee's resource store keeps each as a file name (NAME_MAX).
MAX_RESOURCE_COMPONENT = 255
RESOURCE_COMPONENT = re.compile(r"^[a-zA-Z0-9_\-]+[a-zA-Z0-9_\-.]*$")


class KbsError(SealpodError):
    """An error with trustee's variant name and HTTP status (404 only for path and plugin errors, else 401)."""

    def __init__(self, variant: str, detail: str, *, status: int | None = None, hint: str | None = None) -> None:
        super().__init__(detail, hint=hint)
        self.variant = variant
        self.status = status or (404 if variant in ("InvalidRequestPath", "PluginNotFound") else 401)

    def body(self) -> dict[str, str]:
        """trustee's JSON error body."""
        return {"type": ERROR_TYPE_PREFIX + self.variant, "detail": str(self)}


#: A JSON string literal as ``json.dumps(text, ensure_ascii=False)`` writes it (the function it calls, without the
#: encoder it builds per call: a tenth of the time), which is JCS's escaping.
_jcs_string: Callable[[str], str] = json.encoder.encode_basestring


def jcs(value: Any) -> bytes:
    """RFC 8785 canonical JSON of JSON-compatible data (integers only, no floats)."""

    def encode(item: Any) -> str:
        if item is None:
            return "null"
        if item is True:
            return "true"
        if item is False:
            return "false"
        if isinstance(item, int):
            return str(item)
        if isinstance(item, str):
            return _jcs_string(item)
        if isinstance(item, list | tuple):
            return "[" + ",".join(encode(x) for x in item) + "]"
        if isinstance(item, dict):
            keys = sorted(item, key=lambda k: k.encode("utf-16-be"))
            return "{" + ",".join(f"{_jcs_string(k)}:{encode(item[k])}" for k in keys) + "}"
        raise TypeError(f"JCS: {type(item).__name__} values are not supported here")

    try:
        return encode(value).encode()
    except UnicodeEncodeError:  # a lone surrogate (JSON's "\ud800"): not text, and JCS has no form for it
        raise TypeError("JCS: a string holds a lone UTF-16 surrogate") from None


def report_data(
    nonce: str, tee_pubkey: dict[str, Any], additional_evidence: str = "", algorithm: str = "sha384"
) -> bytes:
    """``H(JCS({"additional-evidence", "nonce", "tee-pubkey"}))``: what the evidence's report data must hold."""
    canonical = jcs({"additional-evidence": additional_evidence, "nonce": nonce, "tee-pubkey": tee_pubkey})
    return hashlib.new(algorithm, canonical).digest()


def check_resource_path(repository: str, kind: str, tag: str) -> str:
    """``repo/type/tag`` after checking each component as trustee does."""
    for part in (repository, kind, tag):
        if len(part) > MAX_RESOURCE_COMPONENT:
            raise KbsError(
                "InvalidRequestPath",
                f"resource path component {part[:32]!r}... is {len(part)} characters, over {MAX_RESOURCE_COMPONENT}",
                hint="trustee keeps each component as a file name, which is at most 255 bytes",
            )
        if not RESOURCE_COMPONENT.match(part):
            raise KbsError(
                "InvalidRequestPath",
                f"resource path component {part!r} is not allowed",
                hint="components are letters, digits, '_', '-' and '.' (not first)",
            )
    return f"{repository}/{kind}/{tag}"
