"""The KBS HTTP API (trustee protocol 0.4.0) as an ASGI app: the handshake's requests on the fast lane
(:mod:`.fast_lane`), the admin API, health and Prometheus metrics through Starlette, all from the one route table
(:mod:`.routes`) over the one service (:class:`~sealpod.kbs.service.kbs.Kbs`)."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from sealpod.errors import SealpodError
from sealpod.kbs.client.protocol import SESSION_COOKIE, KbsError, check_resource_path
from sealpod.kbs.config import KbsConfig, load_config
from sealpod.kbs.service.kbs import ATTESTATION_POLICY_ID, Kbs
from sealpod.kbs.serving.fast_lane import FastRcar, error_body
from sealpod.kbs.serving.routes import ROUTES

CONFIG_ENV = "SEALPOD_KBS_CONFIG"

Handler = Callable[[Request], Awaitable[Response]]


class _Endpoints:
    """The Starlette side of each route: HTTP in, the service's plain calls, HTTP out."""

    def __init__(self, kbs: Kbs, fast: FastRcar) -> None:
        self.kbs = kbs
        self.fast = fast

    def _admin(self, request: Request) -> str:
        return self.kbs.admin.check(request.headers.get("Authorization"), f"{request.method} {request.url.path}")

    async def _body(self, request: Request) -> bytes:
        body = await request.body()
        limit = self.kbs.config.http.max_body_bytes
        if len(body) > limit:
            raise KbsError("InvalidRequest", f"request body over {limit} bytes", status=413)
        return body

    async def auth(self, request: Request) -> Response:
        raise RuntimeError(f"{request.method} {request.url.path} reached Starlette: FastRcar answers it")

    attest = auth

    async def resource(self, request: Request) -> Response:
        p = request.path_params
        path = check_resource_path(p["repository"], p["type"], p["tag"])
        if request.method in ("POST", "DELETE"):
            self._admin(request)
            if request.method == "POST":
                self.kbs.put_resource(path, await self._body(request))
            else:
                self.kbs.delete_resource(path)
            return Response(status_code=200)
        released = self.kbs.release_resource(
            path,
            request.headers.get("Authorization"),
            request.cookies.get(SESSION_COOKIE),
            dict(request.query_params),
        )
        return JSONResponse(released)

    async def admin_resource(self, request: Request) -> Response:
        p = request.path_params
        path = check_resource_path(p["repository"], p["type"], p["tag"])
        self._admin(request)
        return Response(self.kbs.admin_resource(path), media_type="application/octet-stream")

    async def attestation_policy(self, request: Request) -> Response:
        self._admin(request)
        if request.method == "GET":
            return PlainTextResponse(
                self.kbs.attestation_policy(request.path_params.get("policy_id", ATTESTATION_POLICY_ID))
            )
        self.kbs.set_attestation_policy(await self._body(request))
        return Response(status_code=200)

    async def resource_policy(self, request: Request) -> Response:
        self._admin(request)
        if request.method == "GET":
            return PlainTextResponse(self.kbs.resource_policy())
        self.kbs.set_resource_policy(await self._body(request))
        return Response(status_code=200)

    async def reference_value(self, request: Request) -> Response:
        self._admin(request)
        if request.method == "GET":
            return JSONResponse(self.kbs.reference_value(request.path_params["name"]))
        self.kbs.set_reference_values(await self._body(request))
        return Response(status_code=200)

    async def healthz(self, request: Request) -> Response:
        self.kbs.check_health()
        return JSONResponse({"status": "ok"})

    async def metrics(self, request: Request) -> Response:
        counters, peers = self.kbs.counters, self.fast.peer_counters
        totals = counters + peers() if peers is not None else counters
        lines = []
        for name, value in sorted(totals.items()):
            lines += [f"# TYPE sealpod_kbs_{name}_total counter", f"sealpod_kbs_{name}_total {value}"]
        return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")


def build_app(config: KbsConfig) -> FastRcar:
    """The ASGI app for ``config``: the handshake's requests on the raw fast path, the rest with Starlette."""
    kbs = Kbs(config)
    starlette = Starlette(exception_handlers={404: _not_found})
    fast = FastRcar(kbs, starlette)
    endpoints = _Endpoints(kbs, fast)

    def counted(name: str, method: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            kbs.counters[f"requests_{name}"] += 1
            try:
                return await method(request)
            except SealpodError as err:
                if isinstance(err, KbsError):
                    kbs.counters[f"errors_{err.variant}"] += 1
                status, body = error_body(err)
                return JSONResponse(body, status_code=status)

        return endpoint

    for route in ROUTES:
        # a fast-lane endpoint is listed too, so that its other methods get Starlette's 405
        handler = getattr(endpoints, route.name)
        starlette.router.routes.append(Route(route.template, counted(route.name, handler), methods=list(route.methods)))
    starlette.state.kbs = kbs
    return fast


async def _not_found(request: Request, exc: Exception) -> Response:
    error = KbsError("InvalidRequestPath", f"Request path {request.url.path} is invalid")
    return JSONResponse(error.body(), status_code=404)


def app_from_env() -> FastRcar:
    """uvicorn factory: the config file named by ``$SEALPOD_KBS_CONFIG`` (defaults when unset)."""
    path = os.environ.get(CONFIG_ENV)
    return build_app(load_config(Path(path) if path else None))
