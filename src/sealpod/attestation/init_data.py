"""CoCo init-data: the pod's own settings (which KBS, its certificate, the image policy), bound into the evidence.

The format is trustee's (``kbs/docs/initdata.md``) in its TOML encoding::

    version = "0.1.0"
    algorithm = "sha384"          # sha256 | sha384 | sha512
    [data]
    "aa.toml" = '''...'''          # [token_configs.kbs] url, cert
    "cdh.toml" = '''...'''         # [kbc] url, kbs_cert; [image] image_security_policy_uri, ...
    "policy.rego" = '''...'''      # kata's agent policy: carried into the claims, not enforced by sealpod

Its digest is ``algorithm`` over the whole TOML text as given; on SGX it is the enclave's CONFIGID (zero-padded to 64
bytes), and the attestation service checks that the init-data sent with the evidence has the quote's CONFIGID and
puts :func:`InitData.claims` in the token, as trustee does. Nothing in it is secret: the host can read it.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass
from typing import Any

from sealpod.errors import AttestationError

VERSION = "0.1.0"
ALGORITHMS = {"sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512}
#: An init-data larger than this is refused before it is parsed (it travels on the enclave's command line).
MAX_INIT_DATA_BYTES = 64 * 1024
#: The SGX report field that carries the digest.
CONFIG_ID_SIZE = 64


class InitDataError(AttestationError):
    """The init-data is malformed, of an unknown version or algorithm, or does not match the evidence."""


@dataclass(frozen=True)
class KbsSettings:
    """Where the init-data says the pod's KBS is."""

    url: str
    cert: str | None = None


@dataclass(frozen=True)
class InitData:
    """A parsed init-data document, with the exact text its digest is over."""

    text: str
    algorithm: str
    data: dict[str, str]

    @classmethod
    def parse(cls, text: str | bytes, where: str = "init-data") -> InitData:
        """Parse and check a TOML init-data, naming what is wrong."""
        if isinstance(text, bytes):
            if len(text) > MAX_INIT_DATA_BYTES:
                raise InitDataError(f"{where} is over {MAX_INIT_DATA_BYTES} bytes")
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError as err:
                raise InitDataError(f"{where} is not UTF-8 text: {err}") from None
        if len(text.encode("utf-8", "surrogatepass")) > MAX_INIT_DATA_BYTES:
            raise InitDataError(f"{where} is over {MAX_INIT_DATA_BYTES} bytes")
        import tomllib  # here: ~3 ms of imports (with its regular expressions) that a run without init-data skips

        try:
            document = tomllib.loads(text)
        except (tomllib.TOMLDecodeError, RecursionError) as err:
            raise InitDataError(f"{where} is not valid TOML: {err}") from None
        unknown = sorted(set(document) - {"version", "algorithm", "data"})
        if unknown:
            raise InitDataError(f"{where} has unknown top-level keys: {', '.join(unknown)}")
        version = document.get("version")
        if version != VERSION:
            raise InitDataError(f"{where}: version {version!r} is not supported (sealpod reads {VERSION!r})")
        algorithm = document.get("algorithm")
        if algorithm not in ALGORITHMS:
            raise InitDataError(
                f"{where}: algorithm {algorithm!r} is not supported", hint=f"use one of {', '.join(ALGORITHMS)}"
            )
        data = document.get("data", {})
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise InitDataError(f"{where}: data must be a table of strings (file name to content)")
        parsed = cls(text, str(algorithm), dict(data))
        parsed.kbs_settings()  # refuse unreadable aa.toml / cdh.toml now, not at first use
        return parsed

    @property
    def digest(self) -> bytes:
        """``algorithm`` over the whole TOML text."""
        return ALGORITHMS[self.algorithm](self.text.encode("utf-8")).digest()

    @property
    def config_id(self) -> bytes:
        """The digest as SGX's 64-byte CONFIGID (zero-padded, or truncated for a longer digest)."""
        return self.digest[:CONFIG_ID_SIZE].ljust(CONFIG_ID_SIZE, b"\0")

    def _toml_member(self, name: str) -> dict[str, Any]:
        raw = self.data.get(name)
        if raw is None:
            return {}
        import tomllib

        try:
            return tomllib.loads(raw)
        except (tomllib.TOMLDecodeError, RecursionError) as err:
            raise InitDataError(f"init-data {name} is not valid TOML: {err}") from None

    def claims(self) -> dict[str, Any]:
        """What the token carries, as trustee makes it: ``data`` with ``aa.toml`` and ``cdh.toml`` as tables and a
        ``policy.rego``'s ``policy_data`` (when it has one) as ``agent_policy_claims``."""
        import tomllib

        claims: dict[str, Any] = dict(self.data)
        for name in ("aa.toml", "cdh.toml"):
            if name in claims:
                # trustee keeps a member that does not parse as it is
                with contextlib.suppress(tomllib.TOMLDecodeError, RecursionError):
                    claims[name] = tomllib.loads(claims[name])
        policy = claims.get("policy.rego")
        if isinstance(policy, str):
            extracted = _policy_data(policy)
            if extracted is not None:
                del claims["policy.rego"]
                claims["agent_policy_claims"] = extracted
        return claims

    def kbs_settings(self) -> KbsSettings | None:
        """The KBS that ``cdh.toml``'s ``[kbc]`` or ``aa.toml``'s ``[token_configs.kbs]`` names (they must agree)."""
        found: list[tuple[str, str, str | None]] = []
        kbc = self._toml_member("cdh.toml").get("kbc")
        if isinstance(kbc, dict) and kbc.get("url"):
            found.append(("cdh.toml [kbc]", _string(kbc, "url", "cdh.toml [kbc]"), _cert(kbc, "kbs_cert", "cdh.toml")))
        token = self._toml_member("aa.toml").get("token_configs", {})
        kbs = token.get("kbs") if isinstance(token, dict) else None
        if isinstance(kbs, dict) and kbs.get("url"):
            url = _string(kbs, "url", "aa.toml [token_configs.kbs]")
            found.append(("aa.toml [token_configs.kbs]", url, _cert(kbs, "cert", "aa.toml")))
        if not found:
            return None
        if len({(url, cert) for _, url, cert in found}) > 1:
            raise InitDataError(
                f"init-data names two KBSes: {found[0][1]!r} in {found[0][0]} and {found[1][1]!r} in {found[1][0]}",
                hint="give the same url and certificate in both, or only one",
            )
        return KbsSettings(found[0][1], found[0][2])

    def image_setting(self, name: str) -> str | None:
        """A string of ``cdh.toml``'s ``[image]`` table (``image_security_policy_uri``, ...)."""
        image = self._toml_member("cdh.toml").get("image")
        if not isinstance(image, dict) or image.get(name) in (None, ""):
            return None
        return _string(image, name, "cdh.toml [image]")


def _string(table: dict[str, Any], key: str, where: str) -> str:
    value = table.get(key)
    if not isinstance(value, str):
        raise InitDataError(f"init-data {where}: {key} must be a string")
    return value


def _cert(table: dict[str, Any], key: str, where: str) -> str | None:
    value = table.get(key)
    if value in (None, ""):
        return None
    if not isinstance(value, str) or "-----BEGIN CERTIFICATE-----" not in value:
        raise InitDataError(f"init-data {where}: {key} must be a PEM certificate")
    return value


def _policy_data(rego: str) -> Any:
    """The JSON after ``policy_data := `` in a kata agent policy (trustee's extraction), or None."""
    import json

    start = rego.find("policy_data := {")
    if start < 0:
        return None
    try:
        return json.loads(rego[start + len("policy_data := ") :])
    except ValueError:
        return None


def check_binding(init_data: InitData, config_id_hex: str) -> None:
    """Refuse evidence whose CONFIGID is not this init-data's digest."""
    if config_id_hex != init_data.config_id.hex():
        raise InitDataError(
            "the init-data sent with the evidence does not match the enclave's CONFIGID "
            f"(the quote has {config_id_hex[:16]}..., the init-data's {init_data.algorithm} digest is "
            f"{init_data.digest.hex()[:16]}...)",
            hint="the enclave was started with other init-data than the one it sent",
        )
