"""The tenant's admin client of a KBS: resources, policies and reference values."""

from __future__ import annotations

import base64
import json
from typing import Any

from sealpod._internal.http_client import HttpClient, Response, TransportError
from sealpod.kbs.client.protocol import check_resource_path
from sealpod.kbs.client.rcar import KbsClientError, refusal


class AdminClient:
    """Calls a KBS's admin endpoints with a bearer token (or none, for an insecure demo KBS)."""

    def __init__(self, url: str, token: str | None = None, *, verify_tls: bool = True, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = HttpClient(timeout=timeout, verify=verify_tls, headers=headers, follow_redirects=False)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, what: str, **kwargs: Any) -> Response:
        try:
            response = self._http.request(method, f"{self.url}{path}", **kwargs)
        except TransportError as err:
            raise KbsClientError(f"cannot reach the KBS at {self.url}: {err}") from None
        if response.status_code != 200:
            raise refusal(response.status_code, response.content, what)
        return response

    def put_resource(self, path: str, data: bytes) -> None:
        path = check_resource_path(*path.split("/", 2))
        self._call(
            "POST",
            f"/kbs/v0/resource/{path}",
            f"storing {path}",
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )

    def get_resource(self, path: str) -> bytes:
        path = check_resource_path(*path.split("/", 2))
        return self._call("GET", f"/kbs/v0/admin/resource/{path}", f"reading {path}").content

    def delete_resource(self, path: str) -> None:
        path = check_resource_path(*path.split("/", 2))
        self._call("DELETE", f"/kbs/v0/resource/{path}", f"deleting {path}")

    def set_attestation_policy(self, text: str, policy_id: str = "default_cpu") -> None:
        body = {
            "type": "rego",
            "policy_id": policy_id,
            "policy": base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode(),
        }
        self._call("POST", "/kbs/v0/attestation-policy", "setting the attestation policy", json=body)

    def get_attestation_policy(self, policy_id: str = "default_cpu") -> str:
        return self._call("GET", f"/kbs/v0/attestation-policy/{policy_id}", "reading the attestation policy").text

    def set_resource_policy(self, text: str) -> None:
        body = {"policy": base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()}
        self._call("POST", "/kbs/v0/resource-policy", "setting the resource policy", json=body)

    def get_resource_policy(self) -> str:
        return self._call("GET", "/kbs/v0/resource-policy", "reading the resource policy").text

    def set_reference(self, values: dict[str, list[Any]]) -> None:
        message = {
            "version": "0.1.0",
            "type": "sample",
            "payload": base64.b64encode(json.dumps(values).encode()).decode(),
        }
        self._call("POST", "/kbs/v0/reference-value", "setting reference values", json=message)

    def get_reference(self, name: str) -> list[Any]:
        values = self._call("GET", f"/kbs/v0/reference-value/{name}", f"reading reference value {name}").json()
        return list(values.get(name, []))
