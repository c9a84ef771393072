"""Sealed secrets in the workload's environment, unsealed in the enclave before the workload starts.

A variable whose value is ``sealed.<JWS>`` (CoCo's confidential-data-hub format, :mod:`sealpod.kbs.client.sealed`)
gets the secret it names from the KBS, through the enclave's attested session. The workload sees only the
plaintext; the host (the image config, the pod spec, ``sealpod run -e``) only ever held the sealed form.
"""

from __future__ import annotations

from sealpod.errors import SealpodError
from sealpod.kbs.client.rcar import KbsClient
from sealpod.kbs.client.sealed import PREFIX, unseal


class SealedVariableError(SealpodError):
    """A sealed variable could not be unsealed; the workload does not start."""


def is_sealed(value: str) -> bool:
    """Whether ``value`` is a sealed secret."""
    return value.startswith(PREFIX)


def unseal_environment(items: list[str], client: KbsClient, origin: str) -> list[str]:
    """``items`` (``NAME=VALUE``) with each sealed value replaced by its secret; ``origin`` says where they came
    from, for the error that names a variable whose secret the KBS refuses or that is not text."""
    out = []
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not is_sealed(value):
            out.append(item)
            continue
        try:
            secret = unseal(value, client)
        except SealpodError as err:
            raise SealedVariableError(
                f"the sealed secret in the environment variable {name} ({origin}) cannot be unsealed: {err}",
                hint=err.hint or "check that the KBS holds the secret and its verification key, and allows them",
            ) from None
        try:
            text = secret.decode("utf-8")
        except UnicodeDecodeError:
            raise SealedVariableError(
                f"the secret of the environment variable {name} ({origin}) is not UTF-8 text"
            ) from None
        if "\0" in text:
            raise SealedVariableError(f"the secret of the environment variable {name} ({origin}) holds a NUL byte")
        out.append(f"{name}={text}")
    return out
