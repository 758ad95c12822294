"""The ASGI application: the data plane under one router per protocol.

Surfaces (one data plane behind all of them, ``ntm.serving.plane``):
- TensorFlow Serving REST (``ntm.serving.v1``): POST /v1/models/{name}:predict
  {"instances": [...]} -> {"predictions": [...]}; GET /v1/models/{name}[/metadata]; GET /v1/models
- Open Inference Protocol, KServe V2 (``ntm.serving.v2``): /v2, /v2/health/live,
  /v2/health/ready, /v2/models/{name}, /v2/models/{name}/ready, POST /v2/models/{name}/infer
  (JSON and binary)
- the same V2 protocol over gRPC (``ntm.serving.v2grpc``), on ``--grpc-port``
- operations (``ntm.serving.operations``): GET /metrics (Prometheus); GET /openapi.json
- GET / : a page that runs the models in a browser (ntm.serving.page; not in the OpenAPI document)
Every error is {"error": "..."} with a 4xx status for bad input; 5xx only for server faults
(one map: ``ntm.serving.http.response_for``). Every request gets an ``x-request-id`` and a line
in the access log (``ntm.serving.access``).
"""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI

import ntm
from ntm.serving import operations, page, v1, v2
from ntm.serving.access import KEY_HINT, AccessLog, AccessLogMiddleware, key_matches
from ntm.serving.hotpaths import HotPaths, match
from ntm.serving.http import add_error_handlers, error_response
from ntm.serving.plane import DataPlane

# The page loads without the key: the person types it into the page, which sends it.
PUBLIC_PATHS = ("/v2/health/live", "/v2/health/ready") + page.PUBLIC_PATHS


class ApiKeyGuard:
    """ASGI middleware: every HTTP path but PUBLIC_PATHS needs the key, sent as
    ``Authorization: Bearer KEY`` or ``X-API-Key: KEY`` (compared in constant time).

    Plain ASGI rather than ``@app.middleware("http")``: Starlette's BaseHTTPMiddleware runs each
    request through an extra task and stream, which cost more than the key check itself.
    """

    def __init__(self, app, api_key: str):
        self.app = app
        self.key = api_key.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] not in PUBLIC_PATHS:
            headers = dict(scope["headers"])
            if not key_matches(self.key, headers.get(b"x-api-key"),
                               headers.get(b"authorization")):
                response = error_response(401, f"missing or wrong API key: {KEY_HINT}")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class NtmApp(FastAPI):
    """FastAPI with the two inference endpoints answered in front of it (``hot``): a POST to
    an inference path goes through the access log, the key check and ``HotPaths`` alone, not
    through Starlette's error, exception and body-limit middleware, which cost a busy server as
    much event-loop time as the rest of the request (docs/performance.md). Everything else is
    FastAPI's, behind the same access log and key check."""

    hot = None  # the ASGI app that answers inference POSTs

    async def __call__(self, scope, receive, send):
        if self.hot is not None and scope["type"] == "http" and scope["method"] == "POST" \
                and match(scope["path"]) is not None:
            await self.hot(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(plane: DataPlane) -> FastAPI:
    """The FastAPI application serving ``plane``'s models."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        settings = plane.settings
        await plane.start()
        rpc = None
        try:
            if settings.grpc_port:
                from ntm.serving.v2grpc import GrpcServer  # the [grpc] extra

                rpc = GrpcServer(plane, settings.grpc_host, settings.grpc_port)
                await rpc.start()
            yield
        finally:
            if rpc is not None:
                await rpc.stop(settings.graceful_timeout_s)
            await plane.stop()

    app = NtmApp(title="ntm", version=ntm.__version__, lifespan=lifespan,
                  description="Neural Turing Machine inference on onnxruntime: TensorFlow "
                              "Serving REST and Open Inference Protocol (V2) surfaces.")
    log = AccessLog(plane.settings.access_log)
    hot = HotPaths(None, plane)
    # Starlette puts the middleware added last outermost: the key is checked first.
    if plane.settings.api_key:
        app.add_middleware(ApiKeyGuard, api_key=plane.settings.api_key)
        hot = ApiKeyGuard(hot, api_key=plane.settings.api_key)
    # Outermost: it sees every answer, 401s included (and gives each its id, logged or not).
    app.add_middleware(AccessLogMiddleware, log=log)
    app.hot = AccessLogMiddleware(hot, log=log)
    add_error_handlers(app)
    for surface in (v1, v2, operations):
        app.include_router(surface.router(plane))
    app.include_router(page.router(plane.runtimes))
    return app
