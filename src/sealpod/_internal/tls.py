"""TLS client contexts, built once per process: loading a CA bundle costs ~15 ms, and an enclave makes a KBS client
and a registry client on every start (a pre-launched enclave builds the default one before it is asked to run)."""

from __future__ import annotations

import functools
import os
import ssl
from collections.abc import Callable


@functools.cache
def client_context(ca_file: str | None) -> ssl.SSLContext:
    """A verifying client context trusting ``ca_file`` when given, else what HTTP clients trust by default
    (``$SSL_CERT_FILE``, ``$SSL_CERT_DIR``, else certifi's bundle). Cached per process, by path."""
    if ca_file:
        return ssl.create_default_context(cafile=ca_file)
    if os.environ.get("SSL_CERT_FILE"):
        return ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
    if os.environ.get("SSL_CERT_DIR"):
        return ssl.create_default_context(capath=os.environ["SSL_CERT_DIR"])
    import certifi

    return ssl.create_default_context(cafile=certifi.where())


@functools.cache
def pem_context(ca_pem: str) -> ssl.SSLContext:
    """A verifying client context trusting exactly the PEM certificates ``ca_pem`` (a pod's init-data gives its
    KBS's certificate as text). Cached per process, by content."""
    return ssl.create_default_context(cadata=ca_pem)


@functools.cache
def unverified_context() -> ssl.SSLContext:
    """A client context that checks neither the certificate nor the name (``--tls-verify=false``). Cached."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def verify_setting(verify: bool, ca_file: str | None, ca_pem: str | None = None) -> bool | Callable[[], ssl.SSLContext]:
    """An HTTP client's ``verify``: False (no verification) or the function that makes (once) the verifying context
    (``ca_pem`` before ``ca_file``), called when the client first connects over https."""
    if ca_pem:
        return functools.partial(pem_context, ca_pem)
    return functools.partial(client_context, ca_file) if verify else False
