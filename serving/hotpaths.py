"""The two inference endpoints answered without FastAPI's routing: ``HotPaths``.

``POST /v1/models/{name}:predict`` and ``POST /v2/models/{name}/infer`` carry nearly all of a
busy server's requests. Through FastAPI each paid for its exception and exit-stack middleware,
a walk over every route, dependency solving and the endpoint wrapper: about as much event-loop
CPU per request as the rest of the request together (docs/performance.md). This ASGI
middleware answers those two paths with the very handlers the FastAPI routes call
(``v1.predict``, ``v2.counted_infer``: same body limits, errors, metrics); every other
request, and every other method on these paths, goes on to FastAPI. The routes stay in
the app, so the OpenAPI document is unchanged. It sits inside the access log and the API key
check, in front of FastAPI and its middleware (``ntm.serving.app.NtmApp``), and answers
anything unexpected itself with a logged 500.
"""

from __future__ import annotations

from typing import Awaitable, Callable

import logging

from starlette.requests import Request
from starlette.responses import Response

from ntm.contract.errors import NtmError
from ntm.serving import v1, v2
from ntm.serving.http import response_for
from ntm.serving.plane import DataPlane

LOG = logging.getLogger("uvicorn.error")  # where uvicorn logs the errors it catches

V1_PREFIX, V1_SUFFIX = "/v1/models/", ":predict"
V2_PREFIX, V2_SUFFIX = "/v2/models/", "/infer"

Handler = Callable[[DataPlane, str, Request], Awaitable[Response]]


def match(path: str) -> tuple[Handler, str] | None:
    """(handler, model name) for an inference path, else None. A name is one path segment,
    not empty, as FastAPI's ``{name}`` matches it."""
    for prefix, suffix, handler in ((V1_PREFIX, V1_SUFFIX, v1.predict),
                                    (V2_PREFIX, V2_SUFFIX, v2.counted_infer)):
        if path.startswith(prefix) and path.endswith(suffix):
            name = path[len(prefix):len(path) - len(suffix)]
            if name and "/" not in name:
                return handler, name
    return None


class HotPaths:
    """ASGI middleware: POST to an inference path is answered here, the rest by ``app``.

    Outside Starlette's error middleware (``ntm.serving.app.NtmApp``), so it answers what the
    handlers raise itself, through the same map (``response_for``: an unexpected error is a
    logged 500)."""

    def __init__(self, app, plane: DataPlane):
        self.app = app
        self.plane = plane

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "POST":
            found = match(scope["path"])
            if found is not None:
                handler, name = found
                request = Request(scope, receive)
                try:
                    response = await handler(self.plane, name, request)
                except Exception as err:  # noqa: BLE001 - every error gets its answer
                    if not isinstance(err, NtmError):
                        LOG.exception("error answering %s %s", scope["method"], scope["path"])
                    response = response_for(err, request)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
