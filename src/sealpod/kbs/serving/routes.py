"""The KBS's one route table: every endpoint, the methods it answers, and which of them the handshake's fast lane
takes. The Starlette app (:mod:`.app`), the raw ASGI fast lane (:mod:`.fast_lane`) and the HTTP protocol
(:mod:`.http_protocol`) all read it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Endpoint:
    """One path: its Starlette template, the methods it answers, the name its counters and handler go by, and the
    methods the fast lane answers without Starlette."""

    template: str
    methods: tuple[str, ...]
    name: str
    fast: tuple[str, ...] = ()

    @property
    def prefix(self) -> str:
        """The template up to its first parameter (the whole path when it has none)."""
        return self.template.partition("{")[0]

    @property
    def parameters(self) -> int:
        """How many ``{...}`` segments the template has."""
        return self.template.count("{")


ROUTES: tuple[Endpoint, ...] = (
    Endpoint("/kbs/v0/auth", ("POST",), "auth", fast=("POST",)),
    Endpoint("/kbs/v0/attest", ("POST",), "attest", fast=("POST",)),
    Endpoint("/kbs/v0/resource/{repository}/{type}/{tag}", ("GET", "POST", "DELETE"), "resource", fast=("GET",)),
    # sealpod's own: the admin reads a resource as stored (trustee's resource GET is for attested TEEs only)
    Endpoint("/kbs/v0/admin/resource/{repository}/{type}/{tag}", ("GET",), "admin_resource"),
    Endpoint("/kbs/v0/attestation-policy", ("POST", "GET"), "attestation_policy"),
    Endpoint("/kbs/v0/attestation-policy/{policy_id}", ("GET",), "attestation_policy"),
    Endpoint("/kbs/v0/resource-policy", ("POST", "GET"), "resource_policy"),
    Endpoint("/kbs/v0/reference-value", ("POST",), "reference_value"),
    Endpoint("/kbs/v0/reference-value/{name}", ("GET",), "reference_value"),
    Endpoint("/healthz", ("GET",), "healthz"),
    Endpoint("/metrics", ("GET",), "metrics"),
)

_FAST_EXACT = {(method, e.template): e.name for e in ROUTES if not e.parameters for method in e.fast}
_FAST_TEMPLATES = tuple((method, e.prefix, e.parameters, e.name) for e in ROUTES if e.parameters for method in e.fast)


def fast_route(method: str, path: str) -> str | None:
    """The name of the endpoint the fast lane answers for ``method path`` (None: Starlette answers it)."""
    name = _FAST_EXACT.get((method, path))
    if name is not None:
        return name
    for fast_method, prefix, parameters, endpoint in _FAST_TEMPLATES:
        if method == fast_method and path.startswith(prefix) and path_parameters(path, prefix, parameters) is not None:
            return endpoint
    return None


def path_parameters(path: str, prefix: str, count: int) -> tuple[str, ...] | None:
    """The ``count`` non-empty segments after ``prefix`` in ``path`` (None when the path has another shape)."""
    parts = path[len(prefix) :].split("/")
    if len(parts) != count or not all(parts):
        return None
    return tuple(parts)


RESOURCE_PREFIX = next(e.prefix for e in ROUTES if e.name == "resource")
